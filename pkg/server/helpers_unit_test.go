package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// Table tests for the server's pure helpers: no apiserver is needed (the
// package's TestMain starts one for the whole binary regardless).

func TestLabelPrefix(t *testing.T) {
	tests := []struct {
		name, prefix, want string
	}{
		{name: "unset: the default prefix", prefix: "", want: elementalv1.Prefix},
		{name: "dash: no prefix", prefix: "-", want: ""},
		{name: "without slash: one is added", prefix: "example.com", want: "example.com/"},
		{name: "with slash: kept once", prefix: "example.com/", want: "example.com/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mr := &elementalv1.MachineRegistration{}
			mr.Spec.LabelPrefix = tt.prefix
			if got := labelPrefix(mr); got != tt.want {
				t.Errorf("labelPrefix(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
		})
	}
}

func TestBuildMetadata(t *testing.T) {
	data := map[string]interface{}{"System Data": map[string]interface{}{"Runtime": map[string]interface{}{"Hostname": "node one"}}}
	tests := []struct {
		name         string
		labelPrefix  string
		labelTmpls   map[string]string
		annTmpls     map[string]string
		in           hostInput
		existing     *elementalv1.MachineInventory
		wantLabels   map[string]string
		wantAnns     map[string]string
		wantWarnings []string // reasons, in order
	}{
		{
			name:       "nothing in, nothing out",
			wantLabels: map[string]string{}, wantAnns: map[string]string{},
		},
		{
			name:       "client labels get the default prefix and a rendered, sanitized value",
			in:         hostInput{data: data, labels: map[string]string{"host": "${System Data/Runtime/Hostname}"}},
			wantLabels: map[string]string{elementalv1.Prefix + "host": "node-one"}, wantAnns: map[string]string{},
		},
		{
			name:        "client annotations get the registration's prefix",
			labelPrefix: "-",
			in:          hostInput{annotations: map[string]string{"note": "a b"}},
			wantLabels:  map[string]string{}, wantAnns: map[string]string{"note": "a b"},
		},
		{
			name:        "a reserved client key is skipped with a warning",
			labelPrefix: "-",
			in:          hostInput{labels: map[string]string{elementalv1.IdentityHashLabel: "x"}},
			wantLabels:  map[string]string{}, wantAnns: map[string]string{},
			wantWarnings: []string{"InvalidLabel"},
		},
		{
			name:        "os.unmanaged=true sets the unmanaged annotation whatever the prefix",
			labelPrefix: "example.com",
			in:          hostInput{annotations: map[string]string{"os.unmanaged": "true"}},
			wantLabels:  map[string]string{},
			wantAnns:    map[string]string{"example.com/os.unmanaged": "true", elementalv1.OSUnmanagedAnnotation: "true"},
		},
		{
			name:       "label template rendered from host data",
			labelTmpls: map[string]string{"hostname": "${System Data/Runtime/Hostname}"},
			in:         hostInput{data: data},
			wantLabels: map[string]string{"hostname": "node-one"}, wantAnns: map[string]string{},
		},
		{
			name:       "a template variable the host did not send is skipped silently",
			labelTmpls: map[string]string{"missing": "${Nope/Nothing}"},
			in:         hostInput{data: data},
			wantLabels: map[string]string{}, wantAnns: map[string]string{},
		},
		{
			name:       "an invalid template key is skipped with a warning",
			labelTmpls: map[string]string{"bad key!": "x"},
			wantLabels: map[string]string{}, wantAnns: map[string]string{},
			wantWarnings: []string{"InvalidLabelTemplate"},
		},
		{
			name:         "templates cannot set the approval gate's keys",
			annTmpls:     map[string]string{elementalv1.ApprovedAnnotation: "true"},
			labelTmpls:   map[string]string{elementalv1.CordonedAnnotation: "x"},
			wantLabels:   map[string]string{},
			wantAnns:     map[string]string{},
			wantWarnings: []string{"InvalidLabelTemplate", "InvalidLabelTemplate"},
		},
		{
			name:         "nor can a host, through any prefix",
			labelPrefix:  "-",
			in:           hostInput{annotations: map[string]string{elementalv1.ApprovedAnnotation: "true"}, labels: map[string]string{elementalv1.ApprovalAnnotation: "Auto"}},
			wantLabels:   map[string]string{},
			wantAnns:     map[string]string{},
			wantWarnings: []string{"InvalidLabel", "InvalidLabel"},
		},
		{
			name:       "a Random template keeps the existing inventory's value",
			labelTmpls: map[string]string{"rnd": "${Random/Hex/6}"},
			annTmpls:   map[string]string{"arnd": "${Random/Hex/6}"},
			existing: &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
				Labels: map[string]string{"rnd": "abcdef"}, Annotations: map[string]string{"arnd": "123456"}}},
			wantLabels: map[string]string{"rnd": "abcdef"}, wantAnns: map[string]string{"arnd": "123456"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mr := &elementalv1.MachineRegistration{}
			mr.Spec.LabelPrefix = tt.labelPrefix
			mr.Spec.MachineInventoryLabels = tt.labelTmpls
			mr.Spec.MachineInventoryAnnotations = tt.annTmpls
			labels, anns, warns := buildMetadata(mr, tt.in, tt.existing)
			if !reflect.DeepEqual(labels, tt.wantLabels) {
				t.Errorf("labels = %v, want %v", labels, tt.wantLabels)
			}
			if !reflect.DeepEqual(anns, tt.wantAnns) {
				t.Errorf("annotations = %v, want %v", anns, tt.wantAnns)
			}
			var reasons []string
			for _, w := range warns {
				reasons = append(reasons, w.reason)
			}
			if !reflect.DeepEqual(reasons, tt.wantWarnings) {
				t.Errorf("warnings = %v, want reasons %v", warns, tt.wantWarnings)
			}
		})
	}
}

func TestNewInventoryMetadata(t *testing.T) {
	tests := []struct {
		name      string
		reset     bool
		policy    elementalv1.ReleasePolicy
		wantAnns  map[string]string
		wantLabel string
	}{
		{
			name: "defaults: release policy Release, not resettable",
			wantAnns: map[string]string{
				elementalv1.MachineRegistrationAnnotation: "mr",
				elementalv1.ReleasePolicyAnnotation:       string(elementalv1.ReleasePolicyRelease),
			},
		},
		{
			name:  "reset enabled and an explicit policy",
			reset: true, policy: elementalv1.ReleasePolicy("Delete"),
			wantAnns: map[string]string{
				elementalv1.MachineRegistrationAnnotation: "mr",
				elementalv1.ReleasePolicyAnnotation:       "Delete",
				elementalv1.ResettableAnnotation:          "true",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mr := &elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Name: "mr"}}
			mr.Spec.Config.Elemental.Reset.Enabled = tt.reset
			mr.Spec.ReleasePolicy = tt.policy
			anns := map[string]string{}
			newInventoryMetadata(mr, anns)
			if !reflect.DeepEqual(anns, tt.wantAnns) {
				t.Errorf("annotations = %v, want %v", anns, tt.wantAnns)
			}
		})
	}
}

func TestChanged(t *testing.T) {
	tests := []struct {
		name       string
		want, have map[string]string
		out        map[string]string
	}{
		{name: "nothing wanted", want: nil, have: map[string]string{"a": "1"}, out: map[string]string{}},
		{name: "all equal", want: map[string]string{"a": "1"}, have: map[string]string{"a": "1"}, out: map[string]string{}},
		{name: "new key", want: map[string]string{"b": "2"}, have: map[string]string{"a": "1"}, out: map[string]string{"b": "2"}},
		{name: "changed value", want: map[string]string{"a": "2"}, have: map[string]string{"a": "1"}, out: map[string]string{"a": "2"}},
		{name: "empty value is still a key", want: map[string]string{"a": ""}, have: nil, out: map[string]string{"a": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := changed(tt.want, tt.have); !reflect.DeepEqual(got, tt.out) {
				t.Errorf("changed = %v, want %v", got, tt.out)
			}
		})
	}
}

func TestRenderName(t *testing.T) {
	data := map[string]interface{}{"System Data": map[string]interface{}{"Runtime": map[string]interface{}{"Hostname": "Node_One"}}}
	random := func() string { return "rnd" }
	tests := []struct {
		name, tmpl  string
		want        string
		wantWarning bool
		wantErr     bool
	}{
		{name: "unset: random name", tmpl: "", want: "m-rnd"},
		{name: "rendered and sanitized", tmpl: "${System Data/Runtime/Hostname}", want: "node-one"},
		{name: "literal", tmpl: "worker-1", want: "worker-1"},
		{name: "missing variable: random name with a warning", tmpl: "${Nope}", want: "m-rnd", wantWarning: true},
		{name: "nothing valid left: error", tmpl: "---", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mr := &elementalv1.MachineRegistration{}
			mr.Spec.MachineName = tt.tmpl
			got, warn, err := renderName(mr, data, random)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("name = %q, want %q", got, tt.want)
			}
			if (warn != nil) != tt.wantWarning {
				t.Errorf("warning = %v, want one: %v", warn, tt.wantWarning)
			}
		})
	}
}

func TestAuthMethod(t *testing.T) {
	tests := []struct {
		name, header, want string
		wantErr            bool
	}{
		{name: "missing", header: "", wantErr: true},
		{name: "tpm", header: "Bearer TPM" + "abc", want: "tpm"},
		{name: "plain", header: "Bearer PLAIN" + "id", want: "plain"},
		{name: "other bearer", header: "Bearer xyz", wantErr: true},
		{name: "basic", header: "Basic dXNlcjpwdw==", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := authMethod(tt.header)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("authMethod(%q) = %q, %v; want %q, error %v", tt.header, got, err, tt.want, tt.wantErr)
			}
			var ae *authError
			if err != nil && !asAuthError(err, &ae) {
				t.Errorf("error %T is not an authError (a 401)", err)
			}
		})
	}
}

func asAuthError(err error, target **authError) bool {
	ae, ok := err.(*authError)
	*target = ae
	return ok
}

func TestMethodAllowed(t *testing.T) {
	tests := []struct {
		auth, method string
		want         bool
	}{
		{auth: "", method: "tpm", want: true},
		{auth: "", method: "plain", want: false},
		{auth: "tpm", method: "tpm", want: true},
		{auth: "tpm", method: "plain", want: false},
		{auth: "mac", method: "plain", want: true},
		{auth: "mac", method: "tpm", want: false},
		{auth: "sys-uuid", method: "plain", want: true},
		{auth: "sys-uuid", method: "tpm", want: false},
		{auth: "unknown", method: "plain", want: false},
		{auth: "unknown", method: "tpm", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.auth+"/"+tt.method, func(t *testing.T) {
			if got := methodAllowed(tt.auth, tt.method); got != tt.want {
				t.Errorf("methodAllowed(%q, %q) = %v, want %v", tt.auth, tt.method, got, tt.want)
			}
		})
	}
}

func TestPlainIdentity(t *testing.T) {
	tests := []struct {
		name, id string
		wantHash string
		wantErr  bool
	}{
		// sha256("abc")
		{name: "valid", id: "abc", wantHash: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{name: "empty", id: "", wantErr: true},
		{name: "255 bytes", id: strings.Repeat("a", 255)},
		{name: "256 bytes", id: strings.Repeat("a", 256), wantErr: true},
		{name: "control character", id: "a\x01b", wantErr: true},
		{name: "non-ASCII", id: "café", wantErr: true},
		{name: "space and tilde are printable", id: " ~"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := plainIdentity(plainPrefix + tt.id)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if id.tpm || len(id.hash) != 64 {
				t.Errorf("identity = %+v, want a PLAIN sha256 hex hash", id)
			}
			if tt.wantHash != "" && id.hash != tt.wantHash {
				t.Errorf("hash = %s, want %s", id.hash, tt.wantHash)
			}
		})
	}
}

func TestTPMIdentityRefusesBadHeaders(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name, payload, wantMsg string
	}{
		{name: "not base64", payload: "!!!", wantMsg: "invalid TPM attestation data"},
		{name: "not JSON", payload: b64("nope"), wantMsg: "invalid TPM attestation data"},
		{name: "no AK", payload: b64(`{"EK":null}`), wantMsg: "no AK"},
		{name: "AK but no EK", payload: b64(`{"AK":{}}`), wantMsg: "invalid TPM attestation data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tpmIdentity(tpmPrefix + tt.payload)
			var ae *authError
			if err == nil || !asAuthError(err, &ae) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("tpmIdentity error = %v, want an authError containing %q", err, tt.wantMsg)
			}
		})
	}
}

func TestIdentityIndexKey(t *testing.T) {
	tests := []struct {
		name string
		id   identity
		want string
	}{
		{name: "tpm", id: identity{tpm: true, hash: "h"}, want: "tpm/h"},
		{name: "plain", id: identity{hash: "h"}, want: "plain/h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.id.indexKey(); got != tt.want {
				t.Errorf("indexKey = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTally(t *testing.T) {
	type op struct {
		release bool
		source  string
		want    string // acquire's refusal reason, "" when admitted
	}
	tests := []struct {
		name                string
		maxTotal, maxPerSrc int
		ops                 []op
		wantTotal           int
		wantPerSource       map[string]int
	}{
		{
			name: "no limits", ops: []op{{source: "a"}, {source: "a"}, {source: ""}},
			wantTotal: 3, wantPerSource: map[string]int{"a": 2},
		},
		{
			name: "total limit", maxTotal: 2,
			ops:       []op{{source: "a"}, {source: "b"}, {source: "c", want: refusedConnections}},
			wantTotal: 2, wantPerSource: map[string]int{"a": 1, "b": 1},
		},
		{
			name: "per-source limit; an empty source is only counted in the total", maxPerSrc: 1,
			ops:       []op{{source: "a"}, {source: "a", want: refusedPerSource}, {source: ""}, {source: ""}},
			wantTotal: 3, wantPerSource: map[string]int{"a": 1},
		},
		{
			name: "release frees the slot and forgets the source", maxPerSrc: 1,
			ops:       []op{{source: "a"}, {release: true, source: "a"}, {source: "a"}, {release: true, source: "a"}},
			wantTotal: 0, wantPerSource: map[string]int{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ty tally
			for i, o := range tt.ops {
				if o.release {
					ty.release(o.source)
					continue
				}
				if got := ty.acquire(o.source, tt.maxTotal, tt.maxPerSrc); got != o.want {
					t.Errorf("op %d: acquire(%q) = %q, want %q", i, o.source, got, o.want)
				}
			}
			if ty.total != tt.wantTotal {
				t.Errorf("total = %d, want %d", ty.total, tt.wantTotal)
			}
			per := ty.perSource
			if per == nil {
				per = map[string]int{}
			}
			if !reflect.DeepEqual(per, tt.wantPerSource) {
				t.Errorf("perSource = %v, want %v", per, tt.wantPerSource)
			}
		})
	}
}

func TestSourceHost(t *testing.T) {
	tests := []struct{ remote, want string }{
		{remote: "10.0.0.1:1234", want: "10.0.0.1"},
		{remote: "[fd00::1]:1234", want: "fd00::1"},
		{remote: "10.0.0.1", want: "10.0.0.1"},
		{remote: "[fd00::1]", want: "fd00::1"},
		{remote: "fd00::1", want: "fd00::1"},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			if got := sourceHost(tt.remote); got != tt.want {
				t.Errorf("sourceHost(%q) = %q, want %q", tt.remote, got, tt.want)
			}
		})
	}
}

func TestRefusal(t *testing.T) {
	tests := []struct {
		reason    string
		wantCode  int
		wantRetry int
		wantBody  string
	}{
		{reason: refusedPerSource, wantCode: http.StatusTooManyRequests, wantRetry: 10, wantBody: "from 10.0.0.1"},
		{reason: refusedConnections, wantCode: http.StatusServiceUnavailable, wantRetry: 5, wantBody: "too many open connections"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			code, retry, body := refusal(tt.reason, "10.0.0.1")
			if code != tt.wantCode || retry != tt.wantRetry || !strings.Contains(body, tt.wantBody) {
				t.Errorf("refusal = %d, %d, %q; want %d, %d, containing %q", code, retry, body, tt.wantCode, tt.wantRetry, tt.wantBody)
			}
		})
	}
}

func TestReadyReason(t *testing.T) {
	tests := []struct {
		name       string
		conditions []metav1.Condition
		wantReason string
		wantReady  bool
	}{
		{name: "no condition yet", wantReason: "not reconciled yet"},
		{
			name:       "not ready: its reason",
			conditions: []metav1.Condition{{Type: elementalv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "NoAgentURL"}},
			wantReason: "NoAgentURL",
		},
		{
			name:       "unknown counts as not ready",
			conditions: []metav1.Condition{{Type: elementalv1.ConditionReady, Status: metav1.ConditionUnknown, Reason: "Pending"}},
			wantReason: "Pending",
		},
		{
			name:       "ready",
			conditions: []metav1.Condition{{Type: elementalv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready"}},
			wantReady:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mr := &elementalv1.MachineRegistration{}
			mr.Status.Conditions = tt.conditions
			reason, ready := readyReason(mr)
			if reason != tt.wantReason || ready != tt.wantReady {
				t.Errorf("readyReason = %q, %v; want %q, %v", reason, ready, tt.wantReason, tt.wantReady)
			}
		})
	}
}

func TestRegistrationAuth(t *testing.T) {
	tests := []struct{ auth, want string }{
		{auth: "", want: "tpm"},
		{auth: "tpm", want: "tpm"},
		{auth: "mac", want: "mac"},
		{auth: "sys-uuid", want: "sys-uuid"},
	}
	for _, tt := range tests {
		t.Run("auth="+tt.auth, func(t *testing.T) {
			mr := &elementalv1.MachineRegistration{}
			mr.Spec.Config.Elemental.Registration.Auth = tt.auth
			if got := registrationAuth(mr); got != tt.want {
				t.Errorf("registrationAuth = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMergeStrings(t *testing.T) {
	tests := []struct {
		name          string
		dst, src, out map[string]string
	}{
		{name: "nil dst", dst: nil, src: map[string]string{"a": "1"}, out: map[string]string{"a": "1"}},
		{name: "nil both", out: map[string]string{}},
		{name: "later value wins", dst: map[string]string{"a": "1", "b": "2"}, src: map[string]string{"a": "3"}, out: map[string]string{"a": "3", "b": "2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mergeStrings(tt.dst, tt.src); !reflect.DeepEqual(got, tt.out) {
				t.Errorf("mergeStrings = %v, want %v", got, tt.out)
			}
		})
	}
}

func TestPreApproved(t *testing.T) {
	sum := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:])
	}
	list := map[string][]byte{
		elementalv1.PreApprovedTPMHashesKey: []byte("ABCDEF0123\n# 99999\n"),
		elementalv1.PreApprovedMACsKey:      []byte("52:54:00:AA:BB:CC,52:54:00:00:00:01  52:54:00:00:00:02\n# 52:54:00:00:00:03"),
		elementalv1.PreApprovedUUIDsKey:     []byte("fd95324a-c26b-4e28-8727-1dcec293a0ec"),
	}
	nic := func(mac string) map[string]interface{} {
		return map[string]interface{}{"Network": map[string]interface{}{"NICs": map[string]interface{}{"0": map[string]interface{}{"MacAddress": mac}}}}
	}
	tests := []struct {
		name  string
		id    identity
		facts map[string]interface{}
		want  bool
	}{
		{name: "tpm hash listed (case-insensitive)", id: identity{tpm: true, hash: "abcdef0123"}, want: true},
		{name: "tpm hash in a comment", id: identity{tpm: true, hash: "99999"}},
		{name: "tpm host reporting a listed MAC is not approved by it", id: identity{tpm: true, hash: "00"}, facts: nic("52:54:00:00:00:01")},
		{name: "mac identity listed", id: identity{hash: sum("52:54:00:00:00:02")}, want: true},
		{name: "mac identity listed in upper case", id: identity{hash: sum("52:54:00:aa:bb:cc")}, want: true},
		{name: "mac identity commented out", id: identity{hash: sum("52:54:00:00:00:03")}},
		{name: "sys-uuid identity listed", id: identity{hash: sum("fd95324a-c26b-4e28-8727-1dcec293a0ec")}, want: true},
		{name: "mac host reporting a listed NIC", id: identity{hash: sum("x")}, facts: nic("52:54:00:AA:BB:CC"), want: true},
		{name: "mac host reporting a listed legacy NIC", id: identity{hash: sum("x")}, facts: map[string]interface{}{"System Data": map[string]interface{}{"Network": map[string]interface{}{"eth0": map[string]interface{}{"MacAddress": "52:54:00:00:00:01"}}}}, want: true},
		{name: "mac host reporting a listed SMBIOS UUID", id: identity{hash: sum("x")}, facts: map[string]interface{}{"System Information": map[string]interface{}{"UUID": "FD95324A-C26B-4E28-8727-1DCEC293A0EC"}}, want: true},
		{name: "unlisted", id: identity{hash: sum("52:54:00:00:00:09")}, facts: nic("52:54:00:00:00:09")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := preApproved(list, tt.id, tt.facts); got != tt.want {
				t.Errorf("preApproved = %v, want %v", got, tt.want)
			}
		})
	}
	if len(entries([]byte(strings.Repeat("a ", 10)))) != 1 {
		t.Error("duplicates are one entry")
	}
}

func TestHardwareLabels(t *testing.T) {
	tests := []struct {
		name string
		data map[string]interface{}
		want map[string]string
	}{
		{name: "nothing reported", want: map[string]string{}},
		{name: "current families", data: map[string]interface{}{
			"CPU":    map[string]interface{}{"TotalCores": "4", "TotalThreads": "8", "Processor": map[string]interface{}{"Vendor": "GenuineIntel"}},
			"Memory": map[string]interface{}{"TotalPhysicalBytes": "8589934592"},
		}, want: map[string]string{elementalv1.CPUTotalCoresLabel: "4", elementalv1.CPUTotalThreadsLabel: "8", elementalv1.CPUVendorLabel: "GenuineIntel", elementalv1.TotalMemoryLabel: "8589934592"}},
		{name: "legacy tree", data: map[string]interface{}{"System Data": map[string]interface{}{
			"CPU": map[string]interface{}{"Total Cores": "2", "Vendor": "ARM Ltd."}, "Memory": map[string]interface{}{"Total Physical Bytes": "1024"},
		}}, want: map[string]string{elementalv1.CPUTotalCoresLabel: "2", elementalv1.CPUVendorLabel: "ARM-Ltd", elementalv1.TotalMemoryLabel: "1024"}},
		{name: "zero and garbage counts are dropped", data: map[string]interface{}{
			"CPU": map[string]interface{}{"TotalCores": "0", "TotalThreads": "many"}, "Memory": map[string]interface{}{"TotalPhysicalBytes": "-5"},
		}, want: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hardwareLabels(tt.data); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("hardwareLabels = %v, want %v", got, tt.want)
			}
		})
	}
}
