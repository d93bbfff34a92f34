package inventory

import (
	"fmt"
	"strings"
	"unicode/utf8"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// QuarantinePrefix starts the cordon reason the operator writes on a host
// whose bootstrap plan kept failing; an admin's own cordon reasons are
// anything else.
const QuarantinePrefix = "quarantined:"

// maxQuarantineLine bounds the agent output quoted in the cordon reason (an
// annotation value the host's output must not be able to bloat).
const maxQuarantineLine = 256

// Quarantined reports whether the operator cordoned the inventory for
// failing its bootstrap plan.
func Quarantined(mi *elementalv1.MachineInventory) bool {
	return strings.HasPrefix(mi.Annotations[elementalv1.CordonedAnnotation], QuarantinePrefix)
}

// QuarantineReason is the cordon value for a bootstrap plan that failed
// count times, quoting the last non-empty line of its output (bounded,
// control characters dropped).
func QuarantineReason(count int, output string) string {
	reason := fmt.Sprintf("%s bootstrap failed %d times", QuarantinePrefix, count)
	if line := lastLine(output); line != "" {
		reason += ": " + line
	}
	return reason
}

func lastLine(output string) string {
	lines := strings.Split(output, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		line := strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f || r == utf8.RuneError {
				return -1
			}
			return r
		}, lines[i])
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if len(line) > maxQuarantineLine {
			cut := maxQuarantineLine
			for cut > 0 && !utf8.RuneStart(line[cut]) {
				cut--
			}
			line = line[:cut] + "…"
		}
		return line
	}
	return ""
}

// Quarantine returns a copy of mi cordoned with reason. The claim, if any,
// is untouched: the selector decides whether to give the host up.
func Quarantine(mi *elementalv1.MachineInventory, reason string) *elementalv1.MachineInventory {
	out := mi.DeepCopy()
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[elementalv1.CordonedAnnotation] = reason
	return out
}
