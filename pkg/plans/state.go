package plans

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// maxOutputTail bounds failure output copied into conditions (docs/contracts.md, Plan Secret).
const maxOutputTail = 1024

// maxDecodedOutput bounds what is decompressed from agent output, so a huge
// or hostile value cannot exhaust memory.
const maxDecodedOutput = 1 << 20

// Observed is the agent's verdict on one plan checksum.
type Observed struct {
	// State is Applied or Failed against the checksum asked about; empty while pending.
	State           elementalv1.PlanState
	AppliedChecksum string
	FailedChecksum  string
	FailureCount    int
	LastApplyTime   *time.Time
	// FailureOutput is the tail of the decoded failed-output when State is Failed.
	FailureOutput string
}

// Observe derives the state of the plan with the given checksum from the
// agent's write-back: failed wins over applied, and an applied-checksum of an
// older plan means nothing (upstream reported it as applied).
func Observe(data map[string][]byte, checksum string) Observed {
	// The write-back comes from the host: only well-formed checksums are
	// kept (they are copied into status), counts are never negative.
	o := Observed{
		AppliedChecksum: checksumOrEmpty(data[KeyAppliedChecksum]),
		FailedChecksum:  checksumOrEmpty(data[KeyFailedChecksum]),
	}
	if t, err := time.Parse(time.UnixDate, string(data[KeyLastApplyTime])); err == nil {
		o.LastApplyTime = &t
	}
	switch {
	case checksum != "" && o.FailedChecksum == checksum:
		o.State = elementalv1.PlanFailed
		if n, err := strconv.Atoi(string(data[KeyFailureCount])); err == nil && n > 0 {
			o.FailureCount = n
		}
		o.FailureOutput = OutputTail(data[KeyFailedOutput])
	case checksum != "" && o.AppliedChecksum == checksum:
		o.State = elementalv1.PlanApplied
	}
	return o
}

// checksumOrEmpty returns raw when it is a checksum as the agent writes it
// (64 lowercase hex digits), else "": anything else cannot name a plan.
func checksumOrEmpty(raw []byte) string {
	if len(raw) != 64 {
		return ""
	}
	for _, c := range raw {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return ""
		}
	}
	return string(raw)
}

// FailureMessage is the condition message for a failed plan.
func (o Observed) FailureMessage(what string) string {
	msg := fmt.Sprintf("%s failed %d time(s)", what, o.FailureCount)
	if o.FailureOutput != "" {
		msg += ": " + o.FailureOutput
	}
	return msg
}

// DecodeOutput decodes applied-output or failed-output: gzip of a JSON map of
// instruction name to base64 output.
func DecodeOutput(raw []byte) (map[string]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	defer func() { _ = zr.Close() }()
	js, err := io.ReadAll(io.LimitReader(zr, maxDecodedOutput))
	if err != nil {
		return nil, err
	}
	// Values are null when an instruction printed nothing on stdout (agents up
	// to v0.3.x also lose stderr of combined output).
	var encoded map[string]*string
	if err := json.Unmarshal(js, &encoded); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(encoded))
	for name, b64 := range encoded {
		if b64 == nil {
			out[name] = ""
			continue
		}
		dec, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("instruction %q: %w", name, err)
		}
		out[name] = string(dec)
	}
	return out, nil
}

// OutputTail renders decoded output as "name: text" entries, sorted by name,
// keeping the last maxOutputTail bytes (the end of a failure says most).
func OutputTail(raw []byte) string {
	decoded, err := DecodeOutput(raw)
	if err != nil {
		return fmt.Sprintf("(undecodable output: %v)", err)
	}
	names := make([]string, 0, len(decoded))
	for n := range decoded {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		text := strings.TrimSpace(decoded[n])
		if text == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(n + ": " + text)
	}
	s := b.String()
	if len(s) > maxOutputTail {
		s = "…" + s[len(s)-maxOutputTail:]
	}
	return s
}
