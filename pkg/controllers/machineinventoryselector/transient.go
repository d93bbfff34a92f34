package machineinventoryselector

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
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
//     first saw it, not from when its queue got to it), then written. The
//     agent's clock starts only once our cache shows the plan we wrote.
//
// Everything else (ready, failures, waits with a reason such as missing
// bootstrap data, pause) is written at once. So is a status that clears or
// changes a recorded machineInventoryRef: the allocator's index of waiting
// selectors only sees a selector whose recorded ref is empty.
func (h *handler) deferTransient(mis *elementalv1.MachineInventorySelector, obs observation, status elementalv1.MachineInventorySelectorStatus) bool {
	switch kind, key := transientOf(mis, obs, status); kind {
	case awaitingVerdict:
		// The allocator wakes us with its verdict (onJudged).
		return !obs.judged
	case awaitingWatch:
		// The plan Secret's event brings us back; the clock starts then.
		h.deferred.Forget(mis.UID)
		h.selectors.EnqueueAfter(mis.Namespace, mis.Name, transientDelay) // a safety net, not the mechanism
		return true
	case awaitingOthers:
		wait := h.deferred.Wait(mis.UID, key)
		if wait == 0 {
			return false // it lasted: write what we see
		}
		h.selectors.EnqueueAfter(mis.Namespace, mis.Name, wait)
		return true
	}
	h.deferred.Forget(mis.UID) // a state that is not a wait: the next wait starts a new clock
	return false
}

// transientKind is how deferTransient treats a status about to be written.
type transientKind int

const (
	// notTransient: written at once; any running clock is dropped.
	notTransient transientKind = iota
	// awaitingVerdict: waiting for the allocator; held until a pass judged
	// the selector (observation.judged).
	awaitingVerdict
	// awaitingOthers: waiting for the owner Machine or the agent; held
	// until the state (the key) has lasted transientDelay.
	awaitingOthers
	// awaitingWatch: the bootstrap plan is written but our cache does not
	// show it yet. Under load that lag alone can last longer than
	// transientDelay; the agent's wait only starts once the plan is out.
	awaitingWatch
)

// transientOf is deferTransient's pure decision: the kind of status being
// written, and for awaitingOthers the key of the state whose duration counts.
func transientOf(mis *elementalv1.MachineInventorySelector, obs observation, status elementalv1.MachineInventorySelectorStatus) (transientKind, string) {
	reason := conditionReason(status.Conditions, elementalv1.ConditionReady)
	switch {
	case obs.paused:
	case refName(mis.Status.MachineInventoryRef) != "" && refName(mis.Status.MachineInventoryRef) != refName(status.MachineInventoryRef):
	case reason == elementalv1.ReasonWaitingForInventory && !obs.waitingMachine && obs.selectorErr == nil:
		return awaitingVerdict, ""
	case reason == elementalv1.ReasonSuccessfullyUpdatedPlan && obs.planUnseen:
		return awaitingWatch, ""
	case reason == elementalv1.ReasonWaitingForInventory, reason == elementalv1.ReasonSuccessfullyUpdatedPlan:
		return awaitingOthers, reason + "/" + status.BootstrapPlanChecksum
	}
	return notTransient, ""
}

func refName(ref *corev1.LocalObjectReference) string {
	if ref == nil {
		return ""
	}
	return ref.Name
}

// confirmAgentWait: a status about to say the agent has not answered yet,
// now that the wait lasted transientDelay, is first checked against a live
// read of the plan Secret. Under load the Secret cache trails the agent's
// answer by seconds (it may not even show the plan yet), and writing the
// wait would be one status write more than the ready that follows. One read
// per wait that lasted, instead of one write. It returns the observation
// and the status built from it.
func (h *handler) confirmAgentWait(mis *elementalv1.MachineInventorySelector, obs observation) (observation, elementalv1.MachineInventorySelectorStatus) {
	status := buildStatus(mis, obs)
	if conditionReason(status.Conditions, elementalv1.ConditionReady) != elementalv1.ReasonSuccessfullyUpdatedPlan ||
		apiequality.Semantic.DeepEqual(mis.Status, status) { // written already: nothing to spare
		return obs, status
	}
	kind, key := transientOf(mis, obs, status)
	if kind != awaitingOthers || h.deferred.Wait(mis.UID, key) > 0 {
		return obs, status
	}
	secret, err := h.k8s.CoreV1().Secrets(obs.inventory.Namespace).Get(context.Background(), obs.inventory.Name, metav1.GetOptions{})
	if err != nil || !plans.OwnedBy(secret, obs.inventory) {
		return obs, status // the wait is written as seen; the Secret's events bring us back
	}
	obs.plan = plans.Observe(secret.Data, obs.checksum)
	return obs, buildStatus(mis, obs)
}
