package machineinventory

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/conditions"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// observation is everything the status depends on, gathered by the handler.
type observation struct {
	// secret is the plan Secret, nil while it does not exist.
	secret *corev1.Secret
	// secretConflict: a same-named Secret that is not ours.
	secretConflict bool
	// owner is the claiming selector (nil when unclaimed or not in the cache).
	owner      *elementalv1.MachineInventorySelector
	ownerName  string
	resetState resetState
	// tamper: data.plan differed from the operator's record this pass (tamper.go).
	tamper *tamper
}

// unrestored: the plan differs from the record, which cannot put it back.
func (o observation) unrestored() bool { return o.tamper != nil && !o.tamper.restored }

type resetState int

const (
	resetNone resetState = iota
	resetPending
	resetTimedOut
)

// selectorOwner returns the name of the claiming selector, if any.
func selectorOwner(mi *elementalv1.MachineInventory) string {
	c, _ := inventory.ClaimOf(mi)
	return c.Selector
}

// buildStatus derives the whole status from the inventory and what was
// observed; it is pure, so an unchanged world gives an identical status (no write).
func buildStatus(mi *elementalv1.MachineInventory, obs observation) elementalv1.MachineInventoryStatus {
	st := *mi.Status.DeepCopy()
	st.Conditions = conditions.DropLegacy(st.Conditions)
	gen := mi.Generation
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		conditions.Set(&st.Conditions, typ, status, reason, msg, gen)
	}

	var observed plans.Observed
	planType := ""
	st.Plan = &elementalv1.PlanStatus{SecretRef: &corev1.ObjectReference{Namespace: mi.Namespace, Name: mi.Name}}
	if obs.secret != nil {
		checksum := plans.Checksum(obs.secret.Data[plans.KeyPlan])
		observed = plans.Observe(obs.secret.Data, checksum)
		planType = obs.secret.Annotations[elementalv1.PlanTypeAnnotation]
		st.Plan.Checksum = checksum
		st.Plan.State = observed.State
		st.Plan.Type = planType
		st.Plan.AppliedChecksum = observed.AppliedChecksum
		st.Plan.FailedChecksum = observed.FailedChecksum
		if observed.State == elementalv1.PlanFailed {
			st.Plan.FailureCount = observed.FailureCount
		}
		if observed.LastApplyTime != nil {
			t := metav1.NewTime(*observed.LastApplyTime)
			st.Plan.LastApplyTime = &t
		}
	}

	// PlanReady: the agent's verdict on the current plan, whatever its purpose.
	switch {
	case obs.secretConflict:
		set(elementalv1.ConditionPlanReady, metav1.ConditionFalse, elementalv1.ReasonPlanCreationFailure, "secret already exists and was not created by this controller")
	case obs.secret == nil:
		set(elementalv1.ConditionPlanReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForPlan, "waiting for the plan secret")
	case observed.State == elementalv1.PlanFailed:
		set(elementalv1.ConditionPlanReady, metav1.ConditionFalse, elementalv1.ReasonPlanFailure, observed.FailureMessage(planType+" plan"))
	case observed.State == elementalv1.PlanApplied:
		set(elementalv1.ConditionPlanReady, metav1.ConditionTrue, elementalv1.ReasonPlanSuccessfullyApplied, "plan successfully applied")
	default:
		set(elementalv1.ConditionPlanReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForPlan, "waiting for the agent to apply the "+planType+" plan")
	}

	if status, reason, msg := tamperedCondition(mi, obs, st); reason != "" {
		set(elementalv1.ConditionPlanTampered, status, reason, msg)
	}

	releasing := inventory.Releasing(mi)
	// Ready: the first unmet step, most specific first.
	switch {
	case obs.unrestored():
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonPlanNotRestored, obs.tamper.message(mi.Namespace+"/"+mi.Name))
	case obs.resetState == resetTimedOut:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonResetTimedOut, "the host did not apply the reset plan in time; deleting without it")
	case obs.resetState == resetPending:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonResetPending, "waiting for the host to apply the reset plan")
	case obs.secretConflict:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonPlanCreationFailure, "secret already exists and was not created by this controller")
	case releasing && observed.State == elementalv1.PlanFailed:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonReleaseFailed, observed.FailureMessage("release plan"))
	case releasing:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonReleasing, "cleaning up the host before returning it to the pool")
	case obs.secret == nil:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForPlan, "waiting for the plan secret")
	case observed.State == elementalv1.PlanFailed:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonPlanFailure, observed.FailureMessage(planType+" plan"))
	case observed.State == elementalv1.PlanApplied:
		set(elementalv1.ConditionReady, metav1.ConditionTrue, elementalv1.ReasonPlanSuccessfullyApplied, "plan successfully applied")
	default:
		set(elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonWaitingForPlan, "waiting for the agent to apply the "+planType+" plan")
	}

	setAdoption(mi, obs, set)
	set(elementalv1.ConditionNetworkConfigReady, metav1.ConditionTrue, elementalv1.ReasonReconcilingNetworkConfig, "NetworkConfig is ready")
	setApproved(mi, &st, gen)

	st.Phase = phase(mi, obs, observed, planType)
	return st
}

// setAdoption is AdoptionReady: whether the claiming selector has recorded
// this inventory.
func setAdoption(mi *elementalv1.MachineInventory, obs observation, set func(typ string, status metav1.ConditionStatus, reason, msg string)) {
	switch {
	case obs.ownerName == "":
		set(elementalv1.ConditionAdoptionReady, metav1.ConditionFalse, elementalv1.ReasonWaitingToBeAdopted, "Waiting to be adopted")
	case obs.owner == nil:
		set(elementalv1.ConditionAdoptionReady, metav1.ConditionFalse, elementalv1.ReasonAdoptionFailure, "owner selector "+obs.ownerName+" not found")
	case obs.owner.Status.MachineInventoryRef == nil || obs.owner.Status.MachineInventoryRef.Name == "":
		set(elementalv1.ConditionAdoptionReady, metav1.ConditionUnknown, elementalv1.ReasonValidatingAdoption, "waiting for selector "+obs.ownerName+" to record the claim")
	case obs.owner.Status.MachineInventoryRef.Name != mi.Name:
		set(elementalv1.ConditionAdoptionReady, metav1.ConditionFalse, elementalv1.ReasonAdoptionFailure, "selector "+obs.ownerName+" points at "+obs.owner.Status.MachineInventoryRef.Name)
	default:
		set(elementalv1.ConditionAdoptionReady, metav1.ConditionTrue, elementalv1.ReasonSuccessfullyAdopted, "adopted by selector "+obs.ownerName)
	}
}

// phase is the informational summary, most specific first.
func phase(mi *elementalv1.MachineInventory, obs observation, observed plans.Observed, planType string) string {
	deleting, releasing := inventory.Deleting(mi), inventory.Releasing(mi)
	ready := observed.State == elementalv1.PlanApplied && !obs.secretConflict
	switch {
	case deleting && obs.resetState == resetPending:
		return "Resetting"
	case deleting:
		return "Deleting"
	case releasing:
		return "Releasing"
	case obs.ownerName != "" && planType == elementalv1.PlanTypeBootstrap && ready:
		return "Provisioned"
	case obs.ownerName != "":
		return "Claimed"
	case inventory.Cordoned(mi):
		return "Cordoned"
	case inventory.PendingApproval(mi):
		return "PendingApproval"
	case ready && planType == elementalv1.PlanTypeEmpty:
		return "Available"
	default:
		return "Registered"
	}
}

// tamperedCondition is PlanTampered, which appears only once tampering was
// seen: True from then until the operator writes another plan (the checksum
// moves on). An empty reason leaves the condition as it is.
func tamperedCondition(mi *elementalv1.MachineInventory, obs observation, st elementalv1.MachineInventoryStatus) (metav1.ConditionStatus, string, string) {
	switch {
	case obs.tamper != nil && obs.tamper.restored:
		return metav1.ConditionTrue, elementalv1.ReasonPlanRestored, obs.tamper.message(mi.Namespace + "/" + mi.Name)
	case obs.tamper != nil:
		return metav1.ConditionTrue, elementalv1.ReasonPlanNotRestored, obs.tamper.message(mi.Namespace + "/" + mi.Name)
	case obs.secret != nil && meta.IsStatusConditionTrue(st.Conditions, elementalv1.ConditionPlanTampered) &&
		(mi.Status.Plan == nil || mi.Status.Plan.Checksum != st.Plan.Checksum):
		return metav1.ConditionFalse, elementalv1.ReasonPlanIntact, "the operator has written another plan since"
	}
	return "", "", ""
}

// setApproved writes the Approved condition on inventories that need
// approval (created under approval: Manual) and leaves it off the others.
func setApproved(mi *elementalv1.MachineInventory, st *elementalv1.MachineInventoryStatus, gen int64) {
	switch {
	case !inventory.ApprovalRequired(mi):
		meta.RemoveStatusCondition(&st.Conditions, elementalv1.ConditionApproved)
	case inventory.Approved(mi):
		conditions.Set(&st.Conditions, elementalv1.ConditionApproved, metav1.ConditionTrue, elementalv1.ReasonApproved, "approved", gen)
	default:
		conditions.Set(&st.Conditions, elementalv1.ConditionApproved, metav1.ConditionFalse, elementalv1.ReasonPendingApproval,
			"registered under approval: Manual; annotate elemental.cattle.io/approved=true to let it be claimed", gen)
	}
}
