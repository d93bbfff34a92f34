package machineinventory

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// tamper is a plan Secret whose data.plan differs from the operator's record
// (docs/contracts.md, Plan Secret).
type tamper struct {
	found, recorded string
	// restored: the recorded plan was written back; else notRestored says why not.
	restored    bool
	notRestored error
}

func (t *tamper) message(secret string) string {
	msg := fmt.Sprintf("data.plan of Secret %s was changed outside the operator (sha256 %s, recorded %s)", secret, short(t.found), short(t.recorded))
	if t.restored {
		return msg + "; the recorded plan was restored"
	}
	return fmt.Sprintf("%s; it cannot be restored: %v", msg, t.notRestored)
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// guardPlan holds the plan Secret to the operator's record: the annotations
// every plan writer sets in the same patch as data.plan, which agents cannot
// change (the admission policy). A Secret without a record (an older
// operator's or upstream's) has its current plan recorded once, never
// rewritten. A plan that differs from the record is put back, byte for byte,
// with a Warning Event and a metric; both patches carry the resourceVersion
// read, so a plan written since by a legitimate writer is never replaced.
func (h *handler) guardPlan(mi *elementalv1.MachineInventory, secret *corev1.Secret) (*corev1.Secret, *tamper, error) {
	c := plans.Verify(secret)
	switch c.Integrity {
	case plans.Intact:
		return secret, nil, nil
	case plans.Unrecorded:
		h.log(mi).WithField("checksum", c.Found).Info("recording the plan found in the plan secret (written without a record)")
		updated, err := h.secrets.Patch(secret.Namespace, secret.Name, types.MergePatchType, plans.AdoptPatch(secret.Data[plans.KeyPlan], secret.ResourceVersion))
		return updated, nil, err
	}
	t := &tamper{found: c.Found, recorded: c.Recorded, notRestored: c.RecordErr}
	log := h.log(mi).WithFields(map[string]interface{}{"found": c.Found, "recorded": c.Recorded, "planType": secret.Annotations[elementalv1.PlanTypeAnnotation]})
	if c.RecordErr == nil {
		updated, err := h.secrets.Patch(secret.Namespace, secret.Name, types.MergePatchType, plans.RestorePatch(c.Plan, secret.ResourceVersion))
		if err != nil {
			return secret, nil, fmt.Errorf("restoring the recorded plan: %w", err)
		}
		secret, t.restored = updated, true
		log.Warn("plan secret tampered with: recorded plan restored")
	} else if already(mi, t, secret) {
		return secret, t, nil // reported on an earlier pass
	} else {
		log.WithError(c.RecordErr).Warn("plan secret tampered with: cannot restore it")
	}
	metrics.PlanTampered.WithLabelValues(secret.Annotations[elementalv1.PlanTypeAnnotation], fmt.Sprint(t.restored)).Inc()
	h.recorder.Event(mi, corev1.EventTypeWarning, "PlanTampered", t.message(secret.Namespace+"/"+secret.Name))
	return secret, t, nil
}

// already: an unrestorable tampering that the status reports already.
func already(mi *elementalv1.MachineInventory, t *tamper, secret *corev1.Secret) bool {
	c := meta.FindStatusCondition(mi.Status.Conditions, elementalv1.ConditionPlanTampered)
	return c != nil && c.Reason == elementalv1.ReasonPlanNotRestored && c.Message == t.message(secret.Namespace+"/"+secret.Name)
}
