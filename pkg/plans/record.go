package plans

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	corev1 "k8s.io/api/core/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// The operator's record of a plan it wrote is two annotations on the plan
// Secret, written in the same patch as data.plan (docs/contracts.md, Plan
// Secret): the checksum, and the plan itself so a tampered plan can be put
// back byte for byte. Agents cannot change annotations (the admission
// policy), so a data.plan that differs from the record was written by
// someone else.

// maxRecord bounds the encoded record: all annotations of an object share
// 256 KiB. A larger plan keeps its checksum but no copy (detected, not restorable).
const maxRecord = 128 << 10

// maxPlan is the most a record may decode to: a Secret holds at most 1 MiB.
const maxPlan = 1 << 20

// Integrity is what a plan Secret's data.plan is, against the record.
type Integrity int

const (
	// Unrecorded: no record (written by an older operator or upstream's).
	Unrecorded Integrity = iota
	// Intact: data.plan is the recorded plan.
	Intact
	// Tampered: data.plan differs from the record.
	Tampered
)

// Check is the verdict on one plan Secret.
type Check struct {
	Integrity Integrity
	// Found is the checksum of data.plan, Recorded the one in the record.
	Found, Recorded string
	// Plan is the recorded plan when Tampered and the record can restore it;
	// otherwise RecordErr says why it cannot.
	Plan      []byte
	RecordErr error
}

// Verify compares data.plan with the record. It is pure and bounded.
func Verify(s *corev1.Secret) Check {
	c := Check{Found: Checksum(s.Data[KeyPlan]), Recorded: s.Annotations[elementalv1.PlanChecksumAnnotation]}
	switch c.Recorded {
	case "":
		c.Integrity = Unrecorded
	case c.Found:
		c.Integrity = Intact
	default:
		c.Integrity = Tampered
		c.Plan, c.RecordErr = decodeRecord(s.Annotations[elementalv1.PlanRecordAnnotation], c.Recorded)
	}
	return c
}

// EncodeRecord is the record annotation's value for plan: base64 of gzip,
// deterministic (no name, no time in the gzip header). ok is false when it
// would not fit (the plan then has a checksum record only).
func EncodeRecord(plan []byte) (string, bool) {
	var buf bytes.Buffer
	zw := writers.Get().(*gzip.Writer)
	zw.Reset(&buf)
	_, _ = zw.Write(plan)
	_ = zw.Close()
	writers.Put(zw)
	enc := base64.StdEncoding.EncodeToString(buf.Bytes())
	return enc, len(enc) <= maxRecord
}

// writers reuses compressors: each holds several hundred KiB of state.
var writers = sync.Pool{New: func() interface{} {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestCompression)
	return zw
}}

func decodeRecord(enc, checksum string) ([]byte, error) {
	if enc == "" {
		return nil, errors.New("the record holds no copy of the plan")
	}
	if len(enc) > maxRecord {
		return nil, fmt.Errorf("the record is over %d bytes", maxRecord)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("the record is not base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("the record is not gzip: %w", err)
	}
	plan, err := io.ReadAll(io.LimitReader(zr, maxPlan+1))
	if err != nil {
		return nil, fmt.Errorf("the record is not gzip: %w", err)
	}
	if len(plan) > maxPlan {
		return nil, fmt.Errorf("the record decodes to over %d bytes", maxPlan)
	}
	if Checksum(plan) != checksum {
		return nil, errors.New("the record's plan does not match its checksum")
	}
	return plan, nil
}

// recordAnnotations are the record of plan, as merge-patch values: a plan
// too large for a copy removes any older copy (null).
func recordAnnotations(plan []byte) map[string]interface{} {
	a := map[string]interface{}{elementalv1.PlanChecksumAnnotation: Checksum(plan)}
	if enc, ok := EncodeRecord(plan); ok {
		a[elementalv1.PlanRecordAnnotation] = enc
	} else {
		a[elementalv1.PlanRecordAnnotation] = nil
	}
	return a
}

// AdoptPatch records the plan a Secret already holds (an older operator's or
// upstream's, which kept no record), guarded by resourceVersion so a plan
// that changed since it was read is never adopted. data.plan is untouched.
func AdoptPatch(plan []byte, resourceVersion string) []byte {
	return mustJSON(map[string]interface{}{
		"metadata": map[string]interface{}{"resourceVersion": resourceVersion, "annotations": recordAnnotations(plan)},
	})
}

// RestorePatch puts the recorded plan back into data.plan, guarded by
// resourceVersion so a plan written since by a legitimate writer (with its
// new record) is never overwritten with the old one.
func RestorePatch(plan []byte, resourceVersion string) []byte {
	return mustJSON(map[string]interface{}{
		"metadata": map[string]interface{}{"resourceVersion": resourceVersion},
		"data":     map[string][]byte{KeyPlan: plan},
	})
}

func mustJSON(v interface{}) []byte {
	out, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and bytes always marshal
	}
	return out
}
