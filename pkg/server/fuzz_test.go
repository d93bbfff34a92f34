package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
	regtpm "github.com/elemental-operator/elemental-operator/pkg/register/tpm"
	"github.com/elemental-operator/elemental-operator/pkg/templates"
)

// Fuzz targets of the registration server's parsers and state machine,
// run by scripts/test with an execution bound. None needs an apiserver
// (TestMain starts none while fuzzing).

func quietLogs(f *testing.F) {
	level := logrus.GetLevel()
	logrus.SetLevel(logrus.PanicLevel)
	f.Cleanup(func() { logrus.SetLevel(level) })
}

// maxAuthMessage is what a refusal before the upgrade may say: text()
// sends at most 1000 bytes, and the real client keeps no more than 1 KiB.
const maxAuthMessage = 1000

// FuzzAuthorization: the Authorization header parser. Any header either
// yields an identity whose hash is what the protocol defines (PLAIN: sha256
// of the id; TPM: 64 hex digits, with a challenge only the right answer
// passes) or a one-line refusal of bounded length; never a panic.
func FuzzAuthorization(f *testing.F) {
	b64 := base64.StdEncoding.EncodeToString
	for _, seed := range []string{
		"", "Bearer PLAIN52:54:00:aa:bb:cc", "Bearer PLAIN", "Bearer PLAINa\tb", "Basic abc",
		"Bearer PLAIN" + strings.Repeat("a", 256), "Bearer TPM", "Bearer TPM!!!", "Bearer TPM" + b64([]byte(`{}`)),
		"Bearer TPM" + b64([]byte(`{"EK":"LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KLS0tLS1FTkQgUFVCTElDIEtFWS0tLS0tCg==","AK":{}}`)),
	} {
		f.Add(seed)
	}
	if regtpm.Available {
		f.Add(realAttestation(f))
	}
	f.Fuzz(func(t *testing.T, header string) {
		method, err := authMethod(header)
		switch {
		case strings.HasPrefix(header, tpmPrefix):
			if err != nil || method != "tpm" {
				t.Fatalf("TPM header: %q %v", method, err)
			}
			checkTPM(t, header)
		case strings.HasPrefix(header, plainPrefix):
			if err != nil || method != "plain" {
				t.Fatalf("PLAIN header: %q %v", method, err)
			}
			checkPlain(t, header)
		default:
			if err == nil {
				t.Fatalf("accepted method %q", method)
			}
			checkRefusal(t, err)
		}
	})
}

// realAttestation is a header of the emulated TPM, whose whole credential
// activation is checked once: the fuzzer mutates a header that passes.
func realAttestation(f *testing.F) string {
	att, err := regtpm.Device{Emulated: true, Seed: 4242}.Attest()
	if err != nil {
		f.Fatal(err)
	}
	id, err := tpmIdentity(att.Header)
	if err != nil || id.hash != att.Hash {
		f.Fatalf("real attestation: %v (hash %s, want %s)", err, id.hash, att.Hash)
	}
	var answer bytes.Buffer
	if err := att.Answer(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(id.challenge), &answer}); err != nil {
		f.Fatal(err)
	}
	if !verifyAnswer(id, answer.Bytes()) {
		f.Fatal("the real answer to the challenge is refused")
	}
	return att.Header
}

// checkRefusal: a refusal before the upgrade is one bounded line.
func checkRefusal(t *testing.T, err error) {
	var ae *authError
	if !errors.As(err, &ae) {
		t.Fatalf("not a refusal: %T %v", err, err)
	}
	if len(ae.msg) > maxAuthMessage || strings.ContainsAny(ae.msg, "\r\n") || ae.msg == "" {
		t.Fatalf("refusal of %d bytes, not one line: %q", len(ae.msg), ae.msg)
	}
}

// checkPlain: a PLAIN id is accepted exactly when it is 1 to 255 printable
// ASCII bytes, and its hash is their sha256.
func checkPlain(t *testing.T, header string) {
	raw := strings.TrimPrefix(header, plainPrefix)
	valid := raw != "" && len(raw) <= maxPlainID
	for i := 0; i < len(raw); i++ {
		valid = valid && raw[i] >= 0x20 && raw[i] <= 0x7e
	}
	id, err := plainIdentity(header)
	if !valid {
		if err == nil {
			t.Fatalf("invalid id %q accepted", raw)
		}
		checkRefusal(t, err)
		return
	}
	sum := sha256.Sum256([]byte(raw))
	if err != nil || id.tpm || id.hash != hex.EncodeToString(sum[:]) || id.indexKey() != "plain/"+id.hash {
		t.Fatalf("id %q: %+v %v", raw, id, err)
	}
}

// checkTPM: an accepted TPM header gives a 64-hex identity and a challenge
// that fits the real client's first read and only the exact secret answers.
func checkTPM(t *testing.T, header string) {
	id, err := tpmIdentity(header)
	if err != nil {
		checkRefusal(t, err)
		return
	}
	if !id.tpm || len(id.hash) != 64 || strings.Trim(id.hash, "0123456789abcdef") != "" || id.indexKey() != "tpm/"+id.hash {
		t.Fatalf("TPM identity %+v", id)
	}
	var ch challenge
	if len(id.challenge) > 2048 || json.Unmarshal(id.challenge, &ch) != nil || ch.EC == nil || len(id.secret) == 0 {
		t.Fatalf("challenge %q", id.challenge)
	}
	good, _ := json.Marshal(challengeAnswer{Secret: id.secret})
	wrong := append([]byte{}, id.secret...)
	wrong[0] ^= 1
	bad, _ := json.Marshal(challengeAnswer{Secret: wrong})
	if !verifyAnswer(id, good) || verifyAnswer(id, bad) || verifyAnswer(id, []byte(header)) || verifyAnswer(id, nil) {
		t.Fatal("challenge answers judged wrongly")
	}
}

// FuzzBuildMetadata: labels and annotations from any host input and any
// registration templates are valid Kubernetes metadata, come only from
// those inputs, never let a host set a reserved key, are bounded by the
// inputs, and the caps admit exactly what is within them (and always a
// host re-registering with the same input).
func FuzzBuildMetadata(f *testing.F) {
	f.Add("", `{"site":"lab","host":"${Runtime/Hostname}"}`, `{"auth":"tpm","os.unmanaged":"true","reg-version":"v1.9.2"}`,
		`{"element":"fire","rand":"${Random/Hex/6}","bad":"${Random/Hex/99}","cores":"${CPU/TotalCores}"}`,
		`{"uuid":"${System Information/UUID}"}`, `{"Runtime":{"Hostname":"node one"},"CPU":{"TotalCores":"4"},"System Information":{"UUID":"u-1"}}`)
	f.Add("-", `{"elemental.cattle.io/identity-hash":"x","a/b":"c"}`, `{"elemental.cattle.io/resettable":"true"}`, `{}`, `{}`, `{}`)
	f.Add("example.com/", `{"k":"`+strings.Repeat("v", 70)+`"}`, `{"n":"a\r\nb"}`, `{"bad key!":"x"}`, `{"big":"${Blob}"}`,
		`{"Blob":"`+strings.Repeat("x", 5000)+`"}`)
	caps := metaCaps{labels: 8, annotations: 8, bytes: 2048}
	f.Fuzz(func(t *testing.T, prefix, clientLabels, clientAnns, labelTmpls, annTmpls, data string) {
		var in hostInput
		var lt, at map[string]string
		var err error
		if in.labels, err = protocol.DecodeStringMap([]byte(clientLabels)); err != nil {
			return
		}
		if in.annotations, err = protocol.DecodeStringMap([]byte(clientAnns)); err != nil {
			return
		}
		if in.data, err = protocol.DecodeObject([]byte(data)); err != nil {
			return
		}
		if json.Unmarshal([]byte(labelTmpls), &lt) != nil || json.Unmarshal([]byte(annTmpls), &at) != nil {
			return
		}
		mr := &elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "mr"}}
		mr.Spec.LabelPrefix, mr.Spec.MachineInventoryLabels, mr.Spec.MachineInventoryAnnotations = prefix, lt, at
		labels, anns, warns := buildMetadata(mr, in, nil)

		if len(labels) > len(in.labels)+len(lt) || len(anns) > len(in.annotations)+len(at)+1 {
			t.Fatalf("%d labels and %d annotations from %d+%d and %d+%d inputs", len(labels), len(anns), len(in.labels), len(lt), len(in.annotations), len(at))
		}
		if len(warns) > len(in.labels)+len(in.annotations)+len(lt)+len(at) {
			t.Fatalf("%d warnings", len(warns))
		}
		checkMetadataKeys(t, labelPrefix(mr), in, lt, at, labels, anns)
		for _, w := range boundedWarnings(warns) {
			if len(w.message) > maxWarningMessage+len("…") {
				t.Fatalf("warning of %d bytes", len(w.message))
			}
		}
		if n := len(boundedWarnings(warns)); n > maxWarningEvents+1 {
			t.Fatalf("%d warning events", n)
		}

		// The caps refuse exactly what is over them.
		within := len(labels) <= caps.labels && len(anns) <= caps.annotations && metadataBytes(labels, anns) <= caps.bytes
		if e := caps.check(nil, labels, anns); (e == nil) != within {
			t.Fatalf("caps %+v: refusal %v for %d labels, %d annotations, %d bytes", caps, e, len(labels), len(anns), metadataBytes(labels, anns))
		}
		// The same host again: Random values are kept, nothing grows, and
		// the caps never refuse what they admitted.
		existing := &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: anns}}
		labels2, anns2, _ := buildMetadata(mr, in, existing)
		for k, v := range labels2 {
			if templates.HasRandom(lt[k]) && labels[k] != "" && v != labels[k] {
				t.Fatalf("random label %q re-rendered: %q then %q", k, labels[k], v)
			}
		}
		if e := caps.check(existing, labels2, anns2); within && e != nil {
			t.Fatalf("re-registration refused: %v", e)
		}
	})
}

// checkMetadataKeys: every label and annotation is valid and comes from a
// template, from a client key the host may set (with the prefix p), or is
// a hardware fact the server derives from the host's data.
func checkMetadataKeys(t *testing.T, p string, in hostInput, lt, at, labels, anns map[string]string) {
	fromClient := func(key string, client map[string]string) bool {
		k, ok := strings.CutPrefix(key, p)
		_, sent := client[k]
		return ok && sent && !elementalv1.ReservedKeys[key]
	}
	// The hardware facts the server itself derives from the host's data.
	facts := hardwareLabels(in.data)
	for k, v := range labels {
		if !templates.ValidLabelKey(k) || !templates.ValidLabelValue(v) {
			t.Fatalf("invalid label %q=%q", k, v)
		}
		if fact, ok := facts[k]; ok && fact == v {
			continue
		}
		if _, tmpl := lt[k]; !tmpl && !fromClient(k, in.labels) {
			t.Fatalf("label %q neither a template's nor a client's allowed key", k)
		}
	}
	for k, v := range anns {
		if !templates.ValidLabelKey(k) || len(v) > templates.MaxAnnotationValue || strings.ContainsAny(v, "\r\n") {
			t.Fatalf("invalid annotation %q (%d bytes)", k, len(v))
		}
		if _, tmpl := at[k]; !tmpl && k != elementalv1.OSUnmanagedAnnotation && !fromClient(k, in.annotations) {
			t.Fatalf("annotation %q neither a template's nor a client's allowed key", k)
		}
	}
}

// FuzzConversation drives the conversation state machine with any sequence
// of frames (and the TPM activation answer) through its frameConn and store
// seams, and checks it against the protocol as docs/contracts.md states it:
// the replies, when it ends and how, and that the inventory is committed
// exactly when a valid conversation reaches Get, within every budget and cap.
//
// Input: byte 0 holds options (bit 0: the host has an inventory, bit 1: the
// commit fails, bit 2: a TPM host), then frames, each a uvarint length and
// that many bytes.
func FuzzConversation(f *testing.F) {
	quietLogs(f)
	frames := func(opts byte, msgs ...[]byte) []byte {
		out := []byte{opts}
		for _, m := range msgs {
			out = binary.AppendUvarint(out, uint64(len(m)))
			out = append(out, m...)
		}
		return out
	}
	fr := func(t protocol.MessageType, payload string) []byte { return protocol.EncodeFrame(t, []byte(payload)) }
	version := fr(protocol.MsgVersion, "\x0c")
	get := fr(protocol.MsgGet, "")
	f.Add(frames(0, version, fr(protocol.MsgSmbios, `{"a":"b"}`), fr(protocol.MsgSystemDataV2, `{}`),
		fr(protocol.MsgAnnotations, `{"auth":"mac"}`), fr(protocol.MsgLabels, `{"site":"lab"}`), get))
	f.Add(frames(1, version, fr(protocol.MsgUpdate, ""), get))
	f.Add(frames(0, version, fr(protocol.MsgUpdate, ""), get))
	f.Add(frames(2, fr(protocol.MsgVersion, "\x07"), get))
	f.Add(frames(0, fr(protocol.MsgVersion, "\x04")))
	f.Add(frames(0, get))
	f.Add(frames(0, version, version))
	f.Add(frames(0, version, fr(protocol.MsgLabels, `{"a":"","b":"","c":"","d":"","e":""}`), get))
	f.Add(frames(0, version, fr(protocol.MsgSmbios, strings.Repeat("x", 5000))))
	f.Add(frames(0, version, []byte{}, get))
	f.Add(frames(0, version, []byte{0x42}))
	f.Add(frames(4, []byte(`{"Secret":"c2VjcmV0"}`), version, get))
	f.Add(frames(4, []byte(`{"Secret":"bm9wZQ=="}`), version, get))

	lim := &limits{conversationBytes: 4096, conversationMessages: 8, meta: metaCaps{labels: 4, annotations: 4, bytes: 1024}}
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) == 0 {
			return
		}
		opts, rest := input[0], input[1:]
		var msgs [][]byte
		for len(rest) > 0 {
			n, k := binary.Uvarint(rest)
			if k <= 0 || n > uint64(len(rest)-k) {
				break
			}
			msgs = append(msgs, rest[k:k+int(n)])
			rest = rest[k+int(n):]
		}
		s := &Server{recorder: &record.FakeRecorder{}}
		s.limits.Store(lim)
		conn := &memConn{frames: msgs}
		st := &memStore{known: opts&1 != 0, fail: opts&2 != 0}
		c := &conversation{s: s, store: st, conn: conn, version: legacyVersion, remote: "fuzz",
			mr: &elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "mr", UID: "u"}}}
		if opts&4 != 0 {
			c.id = identity{tpm: true, hash: "h", challenge: []byte(`{"EC":{}}`), secret: []byte("secret")}
		} else {
			c.id = identity{hash: "h"}
		}
		c.run()

		want := model(msgs, c.id, st.known, st.fail, lim)
		if conn.closes != 1 {
			t.Fatalf("closed %d times", conn.closes)
		}
		if conn.afterClose {
			t.Fatal("written after close")
		}
		if st.commits > 1 {
			t.Fatalf("%d commits", st.commits)
		}
		if (st.commits == 1) != want.commit {
			t.Fatalf("committed %v, the protocol says %v; writes %v, want %v", st.commits == 1, want.commit, conn.writes, want.writes)
		}
		if strings.Join(conn.writes, " ") != strings.Join(want.writes, " ") {
			t.Fatalf("writes %v, want %v", conn.writes, want.writes)
		}
		if conn.read != want.read {
			t.Fatalf("read %d frames, want %d", conn.read, want.read)
		}
		if st.commits == 1 && (len(st.labels) > lim.meta.labels || len(st.annotations) > lim.meta.annotations) {
			t.Fatalf("committed %d labels, %d annotations over the caps", len(st.labels), len(st.annotations))
		}
		for _, e := range conn.errors {
			if msg, err := protocol.DecodeError(e); err != nil || msg == "" || len(msg) > protocol.MaxErrorMessage || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("Error payload %q: %v", e, err)
			}
		}
	})
}

// outcome is what the protocol says a conversation does with some frames.
type outcome struct {
	commit bool
	writes []string
	read   int
}

// model is the protocol's state machine as docs/contracts.md states it,
// written independently of conversation.go: the fuzz target compares them.
func model(msgs [][]byte, id identity, known, commitFails bool, lim *limits) outcome {
	var o outcome
	version := byte(legacyVersion)
	failWith := func(closeCode string) outcome { // Error (v ≥ 8), then Close
		if version >= 8 {
			o.writes = append(o.writes, "Error")
		}
		if closeCode == "" {
			closeCode = "close-1011"
			if version >= 8 {
				closeCode = "close-1000"
			}
		}
		o.writes = append(o.writes, closeCode)
		return o
	}
	protocolError := func() outcome {
		if version >= 8 {
			o.writes = append(o.writes, "Error")
		}
		o.writes = append(o.writes, "close-1008")
		return o
	}
	next := func() ([]byte, bool) {
		if o.read == len(msgs) {
			return nil, false
		}
		o.read++
		return msgs[o.read-1], true
	}
	if id.tpm {
		o.writes = append(o.writes, "raw")
		answer, ok := next()
		if !ok {
			o.writes = append(o.writes, "close-1008")
			return o
		}
		var a challengeAnswer
		if json.Unmarshal(answer, &a) != nil || !bytes.Equal(a.Secret, id.secret) {
			o.writes = append(o.writes, "close-1008")
			return o
		}
	}
	o.writes = append(o.writes, "Ready")
	budget, count, first, update := lim.conversationBytes, 0, true, false
	labels, annotations := map[string]bool{}, map[string]bool{}
	for {
		m, ok := next()
		if !ok {
			o.writes = append(o.writes, "close")
			return o
		}
		if int64(len(m)) > min(budget, protocol.MaxMessageSize) {
			return protocolError()
		}
		if len(m) == 0 || m[0] > protocol.Version {
			return protocolError()
		}
		budget -= int64(len(m))
		if count++; count > lim.conversationMessages {
			return protocolError()
		}
		typ, payload := protocol.MessageType(m[0]), m[1:]
		wasFirst := first
		first = false
		switch typ {
		case protocol.MsgVersion:
			if !wasFirst || len(payload) != 1 {
				return protocolError()
			}
			if payload[0] <= legacyVersion {
				o.writes = append(o.writes, "close-1002")
				return o
			}
			version = min(payload[0], protocol.Version)
			o.writes = append(o.writes, "Version")
			continue
		case protocol.MsgSmbios, protocol.MsgSystemDataV2, protocol.MsgSystemData:
			var obj map[string]interface{}
			if !strictJSON(payload, &obj) || obj == nil {
				return protocolError()
			}
		case protocol.MsgLabels, protocol.MsgAnnotations:
			seen, limit := labels, lim.meta.labels
			if typ == protocol.MsgAnnotations {
				seen, limit = annotations, lim.meta.annotations
			}
			// Keys count as they are read, before the payload is decoded.
			if len(seen)+keysAsRead(payload, limit-len(seen)) > limit {
				return failWith("")
			}
			var sm map[string]string
			if !strictJSON(payload, &sm) || sm == nil {
				return protocolError()
			}
			for k := range sm {
				seen[k] = true
			}
		case protocol.MsgUpdate:
			if update {
				return protocolError()
			}
			update = true
			if !known {
				return failWith("")
			}
		case protocol.MsgGet:
			o.commit = true
			if commitFails {
				return failWith("")
			}
			if version >= 7 {
				o.writes = append(o.writes, "Config")
			} else {
				o.writes = append(o.writes, "raw")
			}
			o.writes = append(o.writes, "close")
			return o
		default:
			return protocolError()
		}
		o.writes = append(o.writes, "Ready")
	}
}

// keysAsRead counts the keys of a JSON object as a reader meets them
// (duplicates too), up to the first syntax error or one past limit.
func keysAsRead(b []byte, limit int) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // any number is a value, as in a decoder that skips it
	depth, n, expectKey := 0, 0, true
	for n <= limit {
		tok, err := dec.Token()
		if err != nil {
			return n
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if depth == 0 && d != '{' {
					return 0
				}
				depth++
			default:
				if depth--; depth == 0 {
					return n
				}
				if depth == 1 {
					expectKey = true
				}
			}
			continue
		}
		if depth == 1 {
			if expectKey {
				n++
			}
			expectKey = !expectKey
		}
	}
	return n
}

// strictJSON decodes one JSON value followed by nothing but whitespace.
func strictJSON(b []byte, v interface{}) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if dec.Decode(v) != nil {
		return false
	}
	return len(bytes.TrimSpace(b[dec.InputOffset():])) == 0
}

// memConn is a frameConn over in-memory frames; it records what the
// conversation writes.
type memConn struct {
	frames     [][]byte
	read       int
	writes     []string
	errors     [][]byte
	closes     int
	afterClose bool
}

var errGone = errors.New("connection lost")

func (m *memConn) next() ([]byte, error) {
	if m.read == len(m.frames) {
		return nil, errGone
	}
	m.read++
	return m.frames[m.read-1], nil
}

func (m *memConn) ReadLimited(limit int64) (protocol.MessageType, []byte, error) {
	b, err := m.next()
	if err != nil {
		return protocol.MsgUndefined, nil, err
	}
	if int64(len(b)) > limit {
		return protocol.MsgUndefined, nil, protocol.ErrOverLimit
	}
	return protocol.DecodeFrame(b)
}

func (m *memConn) ReadRaw() ([]byte, error) { return m.next() }

func (m *memConn) Write(t protocol.MessageType, payload []byte) error {
	if t == protocol.MsgError {
		m.errors = append(m.errors, payload)
	}
	return m.record(t.String())
}

func (m *memConn) WriteRaw([]byte) error { return m.record("raw") }

func (m *memConn) record(w string) error {
	if m.closes > 0 {
		m.afterClose = true
	}
	m.writes = append(m.writes, w)
	return nil
}

func (m *memConn) CloseWith(code int, _ string) {
	_ = m.record(map[int]string{websocket.CloseNormalClosure: "close-1000", websocket.CloseProtocolError: "close-1002",
		websocket.ClosePolicyViolation: "close-1008", websocket.CloseInternalServerErr: "close-1011"}[code])
	m.closes++
}

func (m *memConn) Close() error {
	// The deferred Close after a CloseWith is the same close.
	if m.closes == 0 {
		_ = m.record("close")
		m.closes++
	}
	return nil
}

func (m *memConn) Deadline() time.Time { return time.Time{} }
func (m *memConn) Grace(time.Duration) {}

// memStore answers existing and commit in memory, counting commits.
type memStore struct {
	known, fail         bool
	commits             int
	labels, annotations map[string]string
}

func (m *memStore) existing(string, identity) (*elementalv1.MachineInventory, error) {
	if m.known {
		return &elementalv1.MachineInventory{}, nil
	}
	return nil, nil
}

func (m *memStore) commit(c *conversation) (*protocol.Config, error) {
	m.commits++
	m.labels, m.annotations = c.labels, c.annotations
	if m.fail {
		return nil, &replyError{"creating the MachineInventory failed"}
	}
	return &protocol.Config{}, nil
}
