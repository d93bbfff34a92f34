package plans

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	rplan "github.com/rancher/rancher/pkg/plan"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

func TestEmptyPlanChecksumGolden(t *testing.T) {
	assert.Equal(t, EmptyChecksum, Checksum(Empty))
	assert.Equal(t, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", Checksum([]byte("{}")))
}

func decodeFile(t *testing.T, p rplan.Plan, path string) string {
	t.Helper()
	for _, f := range p.Files {
		if f.Path == path {
			b, err := base64.StdEncoding.DecodeString(f.Content)
			require.NoError(t, err)
			return string(b)
		}
	}
	t.Fatalf("no file %s in plan", path)
	return ""
}

func TestBootstrapPlanMatchesSpecExample(t *testing.T) {
	data, dropped, err := Bootstrap("fire-3f9a1c", []byte("#!/usr/bin/env sh\n"), map[string]string{"element": "fire", "cpus": "4"})
	require.NoError(t, err)
	assert.Empty(t, dropped)
	p, err := rplan.Parse(data)
	require.NoError(t, err)

	var paths []string
	for _, f := range p.Files {
		paths = append(paths, f.Path+" "+f.Permissions)
	}
	assert.Equal(t, []string{
		"/var/lib/rancher/bootstrap.sh 0700",
		"/etc/rancher/rke2/config.yaml.d/99-elemental-name.yaml 0600",
		"/etc/rancher/rke2/config.yaml.d/99-elemental-inventory-labels.yaml 0600",
		"/etc/rancher/k3s/config.yaml.d/99-elemental-name.yaml 0600",
		"/etc/rancher/k3s/config.yaml.d/99-elemental-inventory-labels.yaml 0600",
		"/usr/local/etc/hostname 0644",
		"/run/elemental/persistent/etc/hostname 0644",
	}, paths)
	// The spec's exact base64 values.
	assert.Equal(t, "bm9kZS1uYW1lOiBmaXJlLTNmOWExYw==", p.Files[1].Content)
	assert.Equal(t, "bm9kZS1sYWJlbCs6CiAgICAtIGNwdXM9NAogICAgLSBlbGVtZW50PWZpcmUK", p.Files[2].Content)
	assert.Equal(t, "ZmlyZS0zZjlhMWM=", p.Files[5].Content)
	assert.Equal(t, "#!/usr/bin/env sh\n", decodeFile(t, p, "/var/lib/rancher/bootstrap.sh"))

	require.Len(t, p.OneTimeInstructions, 2)
	assert.Equal(t, "configure hostname", p.OneTimeInstructions[0].Name)
	assert.Equal(t, []string{"set-hostname", "--transient", "fire-3f9a1c"}, p.OneTimeInstructions[0].Args)
	assert.Equal(t, "bootstrap", p.OneTimeInstructions[1].Name)
	assert.Equal(t, "bash", p.OneTimeInstructions[1].Command)
	assert.Equal(t, []string{"-c", "[ -f /var/lib/rancher/bootstrap_done ] || /var/lib/rancher/bootstrap.sh && touch /var/lib/rancher/bootstrap_done"}, p.OneTimeInstructions[1].Args)
	assert.True(t, p.OneTimeInstructions[1].SaveOutput)
}

func TestBootstrapPlanIsDeterministicAndFiltersLabels(t *testing.T) {
	labels := map[string]string{}
	for _, k := range []string{"z", "a", "m", "b/c", "node.kubernetes.io/role", "kubernetes.io/os", "kubernetes.io/bad",
		"node-role.kubernetes.io/worker", "foo.k8s.io/x", elementalv1.IdentityHashLabel} {
		labels[k] = "v"
	}
	first, dropped, err := Bootstrap("n", []byte("x"), labels)
	require.NoError(t, err)
	for i := 0; i < 20; i++ {
		again, _, err := Bootstrap("n", []byte("x"), labels)
		require.NoError(t, err)
		require.Equal(t, Checksum(first), Checksum(again))
	}
	assert.Equal(t, []string{elementalv1.IdentityHashLabel, "foo.k8s.io/x", "kubernetes.io/bad", "node-role.kubernetes.io/worker"}, dropped)
	p, _ := rplan.Parse(first)
	assert.Equal(t, "node-label+:\n    - a=v\n    - b/c=v\n    - kubernetes.io/os=v\n    - m=v\n    - node.kubernetes.io/role=v\n    - z=v\n",
		decodeFile(t, p, "/etc/rancher/rke2/config.yaml.d/99-elemental-inventory-labels.yaml"))

	none, _, err := Bootstrap("n", []byte("x"), nil)
	require.NoError(t, err)
	p, _ = rplan.Parse(none)
	assert.Equal(t, "node-label+: []\n", decodeFile(t, p, "/etc/rancher/k3s/config.yaml.d/99-elemental-inventory-labels.yaml"))
}

func TestResetPlans(t *testing.T) {
	data, err := Reset(false)
	require.NoError(t, err)
	p, _ := rplan.Parse(data)
	require.Len(t, p.OneTimeInstructions, 2)
	assert.Equal(t, "grub2-editenv", p.OneTimeInstructions[0].Command)
	assert.Equal(t, []string{"-r", "+1"}, p.OneTimeInstructions[1].Args)
	assert.Contains(t, decodeFile(t, p, "/oem/reset-cloud-config.yaml"), "systemctl start elemental-register-reset")

	data, err = Reset(true)
	require.NoError(t, err)
	p, _ = rplan.Parse(data)
	require.Len(t, p.OneTimeInstructions, 3)
	assert.Equal(t, []string{"--debug", "--reset-network"}, p.OneTimeInstructions[0].Args)

	data, err = UnmanagedReset(time.Date(2026, 6, 9, 10, 11, 12, 0, time.UTC))
	require.NoError(t, err)
	p, _ = rplan.Parse(data)
	assert.Equal(t, "2026-06-09 10:11:12", decodeFile(t, p, "/var/lib/elemental/.unmanaged_reset"))
	assert.Empty(t, p.OneTimeInstructions)
}

func TestReleaseScriptOrder(t *testing.T) {
	s := ReleaseScript()
	assert.True(t, strings.HasPrefix(s, "set -u\n"))
	assert.Less(t, strings.Index(s, "rke2-uninstall.sh"), strings.Index(s, "rancher-system-agent-uninstall.sh"))
	assert.Less(t, strings.Index(s, "rancher-system-agent-uninstall.sh"), strings.Index(s, "rm -f /var/lib/rancher/bootstrap_done"))
	for _, d := range dropIns {
		assert.Contains(t, s, d)
	}
	assert.True(t, strings.HasSuffix(s, "exit 0\n"))
}

func gz(t *testing.T, outputs map[string]string) []byte {
	enc := map[string]string{}
	for k, v := range outputs {
		enc[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	js, _ := json.Marshal(enc)
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(js)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func TestObserve(t *testing.T) {
	c := Checksum([]byte(`{"files":[]}`))
	old := EmptyChecksum
	failed := gz(t, map[string]string{"bootstrap": "curl: could not resolve host\n"})
	cases := []struct {
		name  string
		data  map[string][]byte
		state elementalv1.PlanState
	}{
		{"nothing reported", map[string][]byte{}, ""},
		{"applied", map[string][]byte{KeyAppliedChecksum: []byte(c)}, elementalv1.PlanApplied},
		{"older plan applied is pending", map[string][]byte{KeyAppliedChecksum: []byte(old)}, ""},
		{"failed while an older plan stays applied", map[string][]byte{KeyAppliedChecksum: []byte(old), KeyFailedChecksum: []byte(c), KeyFailureCount: []byte("3"), KeyFailedOutput: failed}, elementalv1.PlanFailed},
		{"failed wins over applied", map[string][]byte{KeyAppliedChecksum: []byte(c), KeyFailedChecksum: []byte(c)}, elementalv1.PlanFailed},
		{"older failure is pending", map[string][]byte{KeyFailedChecksum: []byte(old)}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.state, Observe(tc.data, c).State)
		})
	}
	o := Observe(cases[3].data, c)
	assert.Equal(t, 3, o.FailureCount)
	assert.Equal(t, "bootstrap: curl: could not resolve host", o.FailureOutput)
	assert.Equal(t, "plan failed 3 time(s): bootstrap: curl: could not resolve host", o.FailureMessage("plan"))

	ts := Observe(map[string][]byte{KeyLastApplyTime: []byte("Mon Jun  8 10:11:12 UTC 2026")}, c)
	require.NotNil(t, ts.LastApplyTime)
	assert.Equal(t, 2026, ts.LastApplyTime.Year())
}

func TestOutputTailIsBounded(t *testing.T) {
	long := strings.Repeat("x", 5000) + "THE END"
	tail := OutputTail(gz(t, map[string]string{"bootstrap": long}))
	assert.LessOrEqual(t, len(tail), maxOutputTail+len("…"))
	assert.True(t, strings.HasSuffix(tail, "THE END"))
	assert.Contains(t, OutputTail([]byte("not gzip")), "undecodable")

	// What agent v0.3.4 writes for a failing instruction with no stdout.
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write([]byte(`{"break":null}`))
	require.NoError(t, w.Close())
	out, err := DecodeOutput(buf.Bytes())
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"break": ""}, out)
	assert.Equal(t, "", OutputTail(buf.Bytes()))
}

func TestPatchTouchesOnlyPlanTypeAndRecord(t *testing.T) {
	var p map[string]interface{}
	require.NoError(t, json.Unmarshal(Patch([]byte("{}"), "empty"), &p))
	assert.Equal(t, map[string]interface{}{
		"metadata": map[string]interface{}{"annotations": map[string]interface{}{
			"elemental.cattle.io/plan.type":     "empty",
			"elemental.cattle.io/plan.checksum": EmptyChecksum,
			// Golden: the record is deterministic (no name or time in the gzip header).
			"elemental.cattle.io/plan.record": "H4sIAAAAAAAC/6quBQQAAP//Q7+mowIAAAA=",
		}},
		"data": map[string]interface{}{"plan": "e30="},
	}, p)
}
