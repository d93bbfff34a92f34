package plans

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// The plan Secret fields the operator reads back from hosts: the agent's
// write-back (Observe, DecodeOutput, OutputTail) and the record next to the
// plan (Verify). A host's token can write any bytes into the write-back keys
// (the admission policy only limits which keys), so these are hostile input.

func gzipped(s string) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return buf.Bytes()
}

func isChecksum(s string) bool { return checksumOrEmpty([]byte(s)) != "" }

// maxTail is the longest OutputTail: the kept bytes plus the ellipsis.
var maxTail = maxOutputTail + len("…")

func FuzzObserve(f *testing.F) {
	c := Checksum([]byte(`{"instructions":[]}`))
	failed := gzipped(`{"break":"ZGlzayBvbiBmaXJlCg=="}`)
	f.Add(EmptyChecksum, "", "0", "Sat Nov 28 12:00:00 UTC 2026", []byte{}, EmptyChecksum)
	f.Add(EmptyChecksum, c, "3", "Sat Nov 28 12:00:00 UTC 2026", failed, c)
	f.Add(c, c, "1", "", gzipped(`{"break":null}`), c)
	f.Add("x", "x", "-7", "yesterday", []byte("not gzip"), "x")
	f.Add(strings.ToUpper(c), "", "99999999999999999999", "Mon Jan  2 15:04:05 MST 2006", gzipped(`[1,2]`), strings.ToUpper(c))
	f.Fuzz(func(t *testing.T, applied, failedSum, count, lastApply string, output []byte, checksum string) {
		data := map[string][]byte{
			KeyAppliedChecksum: []byte(applied), KeyFailedChecksum: []byte(failedSum),
			KeyFailureCount: []byte(count), KeyLastApplyTime: []byte(lastApply), KeyFailedOutput: output,
		}
		o := Observe(data, checksum)

		// Only well-formed checksums reach status, verbatim.
		for _, got := range []struct{ field, raw string }{{o.AppliedChecksum, applied}, {o.FailedChecksum, failedSum}} {
			if got.field != "" && (got.field != got.raw || !isChecksum(got.field)) {
				t.Fatalf("checksum %q kept from %q", got.field, got.raw)
			}
			if got.field == "" && isChecksum(got.raw) {
				t.Fatalf("well-formed checksum %q dropped", got.raw)
			}
		}
		// The verdict: failed wins, then applied, else pending.
		var want elementalv1.PlanState
		switch {
		case checksum != "" && o.FailedChecksum == checksum:
			want = elementalv1.PlanFailed
		case checksum != "" && o.AppliedChecksum == checksum:
			want = elementalv1.PlanApplied
		}
		if o.State != want {
			t.Fatalf("state %q, want %q", o.State, want)
		}
		// Counts are never negative, and only reported for a failure.
		if o.FailureCount < 0 || (o.State != elementalv1.PlanFailed && o.FailureCount != 0) {
			t.Fatalf("failure count %d in state %q", o.FailureCount, o.State)
		}
		if n, err := strconv.Atoi(count); o.State == elementalv1.PlanFailed && err == nil && n > 0 && o.FailureCount != n {
			t.Fatalf("failure count %d, host wrote %d", o.FailureCount, n)
		}
		// Output only for a failure, and bounded.
		if o.State != elementalv1.PlanFailed && o.FailureOutput != "" {
			t.Fatalf("output %q in state %q", o.FailureOutput, o.State)
		}
		if len(o.FailureOutput) > maxTail+len("(undecodable output: )")+256 {
			t.Fatalf("output of %d bytes", len(o.FailureOutput))
		}
		msg := o.FailureMessage("plan")
		if !strings.Contains(msg, fmt.Sprintf("failed %d time(s)", o.FailureCount)) {
			t.Fatalf("message %q", msg)
		}
		// The time is the host's, when it parses.
		if _, err := time.Parse(time.UnixDate, lastApply); (err == nil) != (o.LastApplyTime != nil) {
			t.Fatalf("last-apply-time %q: parsed %v, err %v", lastApply, o.LastApplyTime, err)
		}
	})
}

func FuzzDecodeOutput(f *testing.F) {
	f.Add(gzipped(`{"break":null}`))
	f.Add(gzipped(`{"install":"aW5zdGFsbGVkCg==","check":"b2sK"}`))
	f.Add(gzipped(`{"bad":"%%%"}`))
	f.Add(gzipped(`{"a":"` + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), 5000)) + `"}`))
	f.Add([]byte("not gzip at all"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := DecodeOutput(raw)
		if err != nil && out != nil {
			t.Fatalf("error %v with output", err)
		}
		total := 0
		for name, text := range out {
			total += len(name) + len(text)
		}
		if total > maxDecodedOutput {
			t.Fatalf("decoded %d bytes, limit %d", total, maxDecodedOutput)
		}
		// What decodes re-encodes to the same map (JSON names must be UTF-8).
		validNames := true
		for name := range out {
			validNames = validNames && utf8.ValidString(name)
		}
		if err == nil && len(raw) > 0 && validNames {
			enc := map[string]string{}
			for name, text := range out {
				enc[name] = base64.StdEncoding.EncodeToString([]byte(text))
			}
			js, _ := json.Marshal(enc)
			again, err := DecodeOutput(gzipped(string(js)))
			if err != nil || len(again) != len(out) {
				t.Fatalf("round trip: %v, %d vs %d entries", err, len(again), len(out))
			}
			for name, text := range out {
				if again[name] != text {
					t.Fatalf("round trip of %q changed", name)
				}
			}
		}
		// The tail in conditions is bounded whatever the host wrote.
		tail := OutputTail(raw)
		if err == nil && len(tail) > maxTail {
			t.Fatalf("tail of %d bytes", len(tail))
		}
		if err != nil && !strings.HasPrefix(tail, "(undecodable output: ") {
			t.Fatalf("undecodable output shown as %q", tail)
		}
	})
}

func FuzzVerify(f *testing.F) {
	bootstrap := []byte(`{"instructions":[{"name":"install","command":"sh"}]}`)
	rec, _ := EncodeRecord(bootstrap)
	f.Add(bootstrap, Checksum(bootstrap), rec)
	f.Add([]byte("{}"), Checksum(bootstrap), rec)
	f.Add([]byte("{}"), "", "")
	f.Add([]byte("{}"), Checksum(bootstrap), "%%%")
	f.Add([]byte("{}"), "not-a-checksum", base64.StdEncoding.EncodeToString(gzipped("{}")))
	f.Fuzz(func(t *testing.T, plan []byte, recorded, record string) {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
				elementalv1.PlanChecksumAnnotation: recorded, elementalv1.PlanRecordAnnotation: record,
			}},
			Data: map[string][]byte{KeyPlan: plan},
		}
		c := Verify(s)
		if c.Found != Checksum(plan) || c.Recorded != recorded {
			t.Fatalf("checksums %q %q", c.Found, c.Recorded)
		}
		var want Integrity
		switch recorded {
		case "":
			want = Unrecorded
		case c.Found:
			want = Intact
		default:
			want = Tampered
		}
		if c.Integrity != want {
			t.Fatalf("integrity %d, want %d", c.Integrity, want)
		}
		if c.Integrity != Tampered && (c.Plan != nil || c.RecordErr != nil) {
			t.Fatalf("restore data for a %d plan", c.Integrity)
		}
		// Only ever restored to bytes that hash to the record, within a Secret's size.
		if c.Integrity == Tampered && c.RecordErr == nil && (Checksum(c.Plan) != recorded || len(c.Plan) > maxPlan) {
			t.Fatalf("restores %d bytes that do not match the record", len(c.Plan))
		}
		if c.Integrity == Tampered && (c.RecordErr == nil) == (c.Plan == nil) {
			t.Fatalf("plan %v and error %v", c.Plan != nil, c.RecordErr)
		}
		// Our own record always restores the plan it was made from.
		if enc, ok := EncodeRecord(plan); ok {
			got, err := decodeRecord(enc, Checksum(plan))
			if err != nil || !bytes.Equal(got, plan) {
				t.Fatalf("record round trip: %v", err)
			}
		}
	})
}
