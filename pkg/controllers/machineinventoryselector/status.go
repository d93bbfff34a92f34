package machineinventoryselector

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/conditions"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// observation is what the handler found; buildStatus turns it into status.
type observation struct {
	paused bool
	// selectorErr: spec.selector cannot be parsed.
	selectorErr error
	// waitingMachine: no Machine ownerRef yet (never claim for an orphan).
	waitingMachine bool
	// inventory is the claimed inventory, nil while none is.
	inventory *elementalv1.MachineInventory
	// inventoryDeleted: a ready selector lost its inventory.
	inventoryDeleted bool
	// judged: an allocation pass left the selector without an inventory
	// (claimErr says why when a claim write failed; else none was free).
	judged   bool
	claimErr string
	// whyNot says why no inventory was free for a judged selector: how many
	// match and their classes (inventory.Counts.WhyNot); with spreadWait,
	// the pool's claims per domain. Refreshed slowly (whynot.go).
	whyNot string
	// spreadWait: matching inventories are free, but the topology spread
	// holds the selector back (it names the short domain).
	spreadWait string
	// bootstrapMissing says why the bootstrap data is not available yet.
	bootstrapMissing string
	// planErr: writing the bootstrap plan failed.
	planErr error
	// checksum of the bootstrap plan written for this selector.
	checksum string
	plan     plans.Observed
	// planUnseen: our cache does not show the bootstrap plan this process
	// wrote yet, so the agent (watching the same API server) may not either:
	// the wait is on the watch, not on the agent.
	planUnseen bool
	// releasedHosts are quarantined inventories this selector gave up whose
	// hosts have not applied the cleanup plan yet ("name (reason)").
	releasedHosts []string
}

// buildStatus derives the selector status. It never touches providerID, and
// sets addresses only once (docs/contracts.md, Cluster API); ready is never reverted.
func buildStatus(mis *elementalv1.MachineInventorySelector, obs observation) elementalv1.MachineInventorySelectorStatus {
	st := *mis.Status.DeepCopy()
	st.Conditions = conditions.DropLegacy(st.Conditions)
	gen := mis.Generation
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		conditions.Set(&st.Conditions, typ, status, reason, msg, gen)
	}
	if obs.paused {
		set(elementalv1.ConditionPaused, metav1.ConditionTrue, elementalv1.ReasonPaused, "reconciliation is paused")
		return st // nothing else changes while paused
	}
	set(elementalv1.ConditionPaused, metav1.ConditionFalse, elementalv1.ReasonNotPaused, "")

	if obs.inventory != nil {
		st.MachineInventoryRef = &corev1.LocalObjectReference{Name: obs.inventory.Name}
	} else if !obs.inventoryDeleted {
		st.MachineInventoryRef = nil
		// The plan was written for the inventory that is gone; the next
		// one gets its own.
		st.BootstrapPlanChecksum = ""
	}
	setReleasedHostCleaned(&st, obs.releasedHosts, set)
	if obs.checksum != "" {
		st.BootstrapPlanChecksum = obs.checksum
	}
	applied := obs.checksum != "" && obs.plan.State == elementalv1.PlanApplied

	// InventoryReady
	switch {
	case obs.inventory != nil:
		set(elementalv1.ConditionInventoryReady, metav1.ConditionTrue, elementalv1.ReasonSuccessfullyAdoptedInventory, "claimed inventory "+obs.inventory.Name)
	case obs.inventoryDeleted:
		set(elementalv1.ConditionInventoryReady, metav1.ConditionFalse, elementalv1.ReasonFailedToAdoptInventory, "the claimed inventory was deleted")
	case obs.selectorErr != nil:
		set(elementalv1.ConditionInventoryReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForInventory, "invalid selector: "+obs.selectorErr.Error())
	case obs.waitingMachine:
		set(elementalv1.ConditionInventoryReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForInventory, "waiting for the owner Machine before claiming")
	case obs.claimErr != "":
		set(elementalv1.ConditionInventoryReady, metav1.ConditionFalse, elementalv1.ReasonFailedToAdoptInventory, obs.claimErr)
	case obs.spreadWait != "":
		set(elementalv1.ConditionInventoryReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForInventory, spreadMessage(obs))
	default:
		set(elementalv1.ConditionInventoryReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForInventory, noFreeInventory(mis, obs))
	}

	// BootstrapReady
	switch {
	case obs.waitingMachine:
		set(elementalv1.ConditionBootstrapReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForBootstrapData, "the selector has no owner Machine yet")
	case obs.bootstrapMissing != "":
		set(elementalv1.ConditionBootstrapReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForBootstrapData, obs.bootstrapMissing)
	case obs.checksum == "":
		set(elementalv1.ConditionBootstrapReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForBootstrapData, "no bootstrap plan written yet")
	case obs.plan.State == elementalv1.PlanFailed:
		set(elementalv1.ConditionBootstrapReady, metav1.ConditionFalse, elementalv1.ReasonBootstrapPlanFailed, obs.plan.FailureMessage("bootstrap plan"))
	case applied:
		set(elementalv1.ConditionBootstrapReady, metav1.ConditionTrue, elementalv1.ReasonBootstrapPlanApplied, "bootstrap plan applied")
	default:
		set(elementalv1.ConditionBootstrapReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForBootstrapPlan, "waiting for the agent to apply the bootstrap plan")
	}

	// Ready: the first unmet step.
	switch {
	case obs.selectorErr != nil:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonInvalidSelector, obs.selectorErr.Error())
	case obs.inventoryDeleted:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonInventoryDeleted, "the claimed inventory was deleted; delete the Machine to replace it")
	case obs.inventory == nil && !obs.waitingMachine && obs.claimErr != "":
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonFailedToAdoptInventory, obs.claimErr)
	case obs.waitingMachine || obs.inventory == nil:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForInventory, waitingMessage(obs))
	case obs.planErr != nil:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonFailedToUpdatePlan, obs.planErr.Error())
	case obs.bootstrapMissing != "":
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForBootstrapData, obs.bootstrapMissing)
	case obs.plan.State == elementalv1.PlanFailed:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonBootstrapPlanFailed, obs.plan.FailureMessage("bootstrap plan"))
	case applied:
		set(elementalv1.ConditionReady, metav1.ConditionTrue, elementalv1.ReasonSelectorReady, "bootstrap plan applied on "+obs.inventory.Name)
	default:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonSuccessfullyUpdatedPlan, "bootstrap plan written; waiting for the agent to apply it")
	}

	if applied && !st.Ready {
		st.Ready = true
		st.Initialization = &elementalv1.Initialization{Provisioned: true}
	}
	if st.Ready && len(st.Addresses) == 0 && mis.Spec.ProviderID == "" && obs.inventory != nil {
		st.Addresses = addressesOf(obs.inventory)
	}
	return st
}

// waitingMessage is the Ready message of a selector without an inventory:
// the topology spread's reason when that is what holds it back.
func waitingMessage(obs observation) string {
	if !obs.waitingMachine && obs.spreadWait != "" {
		return spreadMessage(obs)
	}
	if !obs.waitingMachine && obs.whyNot != "" {
		return "waiting for a matching inventory: " + obs.whyNot
	}
	return "waiting for a matching inventory"
}

// spreadMessage is the message of a selector the topology spread holds
// back: the short domains, then the pool's claims per domain when known.
func spreadMessage(obs observation) string {
	if obs.whyNot == "" {
		return obs.spreadWait
	}
	return obs.spreadWait + "; " + obs.whyNot
}

// setReleasedHostCleaned: a host given up before the selector was ready
// may still run Rancher's agent for this Machine until it applied the
// cleanup plan; the condition exists only once a host was given up.
func setReleasedHostCleaned(st *elementalv1.MachineInventorySelectorStatus, releasedHosts []string, set func(typ string, status metav1.ConditionStatus, reason, msg string)) {
	switch {
	case len(releasedHosts) > 0:
		set(elementalv1.ConditionReleasedHostCleaned, metav1.ConditionFalse, elementalv1.ReasonWaitingForCleanup,
			"released "+strings.Join(releasedHosts, ", ")+"; until its host applies the cleanup plan it may still run Rancher's agent for this Machine")
	case conditionReason(st.Conditions, elementalv1.ConditionReleasedHostCleaned) != "":
		set(elementalv1.ConditionReleasedHostCleaned, metav1.ConditionTrue, elementalv1.ReasonCleanedUp, "the released host applied the cleanup plan")
	}
}

// addressesOf reads the fixed address labels of an inventory, one entry each.
func addressesOf(mi *elementalv1.MachineInventory) []elementalv1.MachineAddress {
	var out []elementalv1.MachineAddress
	for _, a := range []struct {
		label string
		typ   elementalv1.MachineAddressType
	}{
		{elementalv1.InternalIPLabel, elementalv1.MachineInternalIP},
		{elementalv1.ExternalIPLabel, elementalv1.MachineExternalIP},
		{elementalv1.HostnameLabel, elementalv1.MachineHostName},
	} {
		if v := mi.Labels[a.label]; v != "" {
			out = append(out, elementalv1.MachineAddress{Type: a.typ, Address: v})
		}
	}
	return out
}

// noFreeInventory is InventoryReady's message for a selector left waiting:
// the why-not counts once known.
func noFreeInventory(mis *elementalv1.MachineInventorySelector, obs observation) string {
	if obs.whyNot != "" {
		return "no free inventory: " + obs.whyNot
	}
	return "no free inventory in namespace " + mis.Namespace + " matches the selector (free = Ready, not deleting, not claimed, not releasing, not cordoned, not pending approval)"
}
