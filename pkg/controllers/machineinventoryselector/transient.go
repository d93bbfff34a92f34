package machineinventoryselector

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// transientDelay is how long a selector may wait on something outside the
// operator (CAPI setting the Machine ownerRef, the agent applying the plan)
// before that wait is written: a fast agent applies the plan within a second,
// a real host installing rancher-system-agent takes longer and is shown.
const transientDelay = 5 * time.Second

// deferTransient decides whether an in-progress status can go unwritten
// (the claim protocol records the claim in the same status write that
// follows, usually the one that sets ready):
//
//   - waiting for the allocator: not written until an allocation pass has
//     judged the selector. The pass either claims an inventory for it
//     (progress: nothing to say) or leaves it waiting with a verdict (no free
//     match, or a failed claim) and wakes the selector, whose status then
//     says so at once. This wait does not depend on how long the queues are,
//     so it costs no write however many selectors arrive together.
//   - waiting for the owner Machine or for the agent: held back until the
//     same state has lasted transientDelay (measured from when this process
//     first saw it, not from when its queue got to it), then written.
//
// Everything else (ready, failures, waits with a reason such as missing
// bootstrap data, pause) is written at once. So is a status that clears or
// changes a recorded machineInventoryRef: the allocator's index of waiting
// selectors only sees a selector whose recorded ref is empty.
func (h *handler) deferTransient(mis *elementalv1.MachineInventorySelector, obs observation, status elementalv1.MachineInventorySelectorStatus) bool {
	reason := conditionReason(status.Conditions, elementalv1.ConditionReady)
	switch {
	case obs.paused:
	case refName(mis.Status.MachineInventoryRef) != "" && refName(mis.Status.MachineInventoryRef) != refName(status.MachineInventoryRef):
	case reason == elementalv1.ReasonWaitingForInventory && !obs.waitingMachine && obs.selectorErr == nil:
		// The allocator wakes us with its verdict (onJudged).
		return !obs.judged
	case reason == elementalv1.ReasonWaitingForInventory, reason == elementalv1.ReasonSuccessfullyUpdatedPlan:
		wait := h.deferred.Wait(mis.UID, reason+"/"+status.BootstrapPlanChecksum)
		if wait == 0 {
			return false // it lasted: write what we see
		}
		h.selectors.EnqueueAfter(mis.Namespace, mis.Name, wait)
		return true
	}
	h.deferred.Forget(mis.UID) // a state that is not a wait: the next wait starts a new clock
	return false
}

func refName(ref *corev1.LocalObjectReference) string {
	if ref == nil {
		return ""
	}
	return ref.Name
}
