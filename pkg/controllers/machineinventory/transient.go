package machineinventory

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/conditions"
)

// transientDelay is how long a status that only says "waiting for the agent"
// may go unwritten (a registered host acks the empty plan within a second);
// a wait that lasts is written after this delay.
const transientDelay = 5 * time.Second

// adoptionRecheck is when a deferred claimed-but-not-recorded status is
// looked at again, in case its selector stopped making progress without a
// status write that would bring us back (a pause).
const adoptionRecheck = 30 * time.Second

// deferTransient decides whether an in-progress status can go unwritten.
// Failures and final states are never deferred.
//
//   - Claimed, and the selector has not recorded the claim yet
//     (AdoptionReady=Unknown/ValidatingAdoption): the adoption is in the
//     selector controller's hands and its status is where progress shows.
//     Its next status write (ready, a failure, a wait with a reason, or an
//     in-progress state that lasted) records the claim and brings this
//     inventory back, which then tells the same story. Nothing here expires
//     while that selector is progressing, so queueing delay at scale costs no
//     write: an adoption writes the inventory status once.
//   - Otherwise, waiting for the agent (WaitingForPlan): held back until the
//     same state has lasted transientDelay, then written.
func (h *handler) deferTransient(mi *elementalv1.MachineInventory, obs observation, status elementalv1.MachineInventoryStatus) bool {
	if conditions.Changed(mi.Status.Conditions, status.Conditions, elementalv1.ConditionPlanTampered) {
		h.deferred.Forget(mi.UID)
		return false // tampering is news at once
	}
	ready := meta.FindStatusCondition(status.Conditions, elementalv1.ConditionReady)
	adoption := meta.FindStatusCondition(status.Conditions, elementalv1.ConditionAdoptionReady)
	switch {
	case ready == nil || adoption == nil || ready.Reason == elementalv1.ReasonPlanFailure:
	case adoption.Reason == elementalv1.ReasonValidatingAdoption:
		if selectorProgressing(obs.owner) {
			h.inventories.EnqueueAfter(mi.Namespace, mi.Name, adoptionRecheck)
			return true
		}
	case ready.Reason == elementalv1.ReasonWaitingForPlan:
		checksum := ""
		if status.Plan != nil {
			checksum = status.Plan.Checksum
		}
		wait := h.deferred.Wait(mi.UID, ready.Reason+"/"+adoption.Reason+"/"+checksum)
		if wait == 0 {
			return false // it lasted: write what we see
		}
		h.inventories.EnqueueAfter(mi.Namespace, mi.Name, wait)
		return true
	}
	h.deferred.Forget(mi.UID) // a state that is not a wait: the next wait starts a new clock
	return false
}

// selectorProgressing: the claiming selector exists, is not going away and
// is not paused (a paused selector writes nothing but Paused=True, so it
// would never record the claim).
func selectorProgressing(mis *elementalv1.MachineInventorySelector) bool {
	return mis != nil && mis.DeletionTimestamp == nil &&
		!meta.IsStatusConditionTrue(mis.Status.Conditions, elementalv1.ConditionPaused)
}
