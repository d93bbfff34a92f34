// Package conditions holds the small helpers every status builder shares.
package conditions

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Set sets a condition; the transition time changes only when the status does.
func Set(conds *[]metav1.Condition, typ string, status metav1.ConditionStatus, reason, message string, generation int64) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: generation,
	})
}

// DropLegacy removes conditions written by the wrangler-era operator without
// reason or transition time: the schema would reject the whole status write.
func DropLegacy(conds []metav1.Condition) []metav1.Condition {
	out := conds[:0:0]
	for _, c := range conds {
		if c.Type == "" || c.Status == "" || c.Reason == "" || c.LastTransitionTime.IsZero() {
			continue
		}
		out = append(out, c)
	}
	return out
}

// Changed reports whether condition typ differs in status or reason between
// two lists: what makes an Event worth recording.
func Changed(before, after []metav1.Condition, typ string) bool {
	b, a := meta.FindStatusCondition(before, typ), meta.FindStatusCondition(after, typ)
	if a == nil {
		return false
	}
	return b == nil || b.Status != a.Status || b.Reason != a.Reason
}
