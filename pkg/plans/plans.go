// Package plans builds the rancher-system-agent plans the operator writes into
// inventory plan Secrets, and reads back what the agent reports (docs/contracts.md, Plan Secret).
// Everything here is pure: no API calls.
package plans

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	rplan "github.com/rancher/rancher/pkg/plan"
)

// Secret data keys (docs/contracts.md, Plan Secret).
const (
	KeyPlan            = "plan"
	KeyAppliedChecksum = "applied-checksum"
	KeyAppliedOutput   = "applied-output"
	KeyFailedChecksum  = "failed-checksum"
	KeyFailedOutput    = "failed-output"
	KeyFailureCount    = "failure-count"
	KeySuccessCount    = "success-count"
	KeyLastApplyTime   = "last-apply-time"
	KeyMaxFailures     = "max-failures"
)

// Empty is the initial plan: exactly the two bytes `{}`.
var Empty = []byte("{}")

// EmptyChecksum is sha256("{}"), the golden value (see docs/contracts.md, Plan Secret).
const EmptyChecksum = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

// Checksum is lowercase hex sha256 over the exact stored bytes, as the agent computes it.
func Checksum(plan []byte) string {
	sum := sha256.Sum256(plan)
	return hex.EncodeToString(sum[:])
}

// Encode serialises a plan compactly and proves the agent can parse it: the
// agent silently ignores invalid JSON, so a bad plan would hang forever.
func Encode(p rplan.Plan) ([]byte, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if _, err := rplan.Parse(data); err != nil {
		return nil, fmt.Errorf("plan does not round-trip: %w", err)
	}
	return data, nil
}
