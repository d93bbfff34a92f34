package machineinventoryselector

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// OnChange drives one selector through claim, bootstrap and readiness. The
// claim itself is made by the allocator; this handler records it, repairs
// it after crashes, and does everything after.
func (h *handler) OnChange(_ string, mis *elementalv1.MachineInventorySelector) (*elementalv1.MachineInventorySelector, error) {
	if mis == nil {
		return nil, nil
	}
	if h.written.Stale(mis) {
		return mis, nil // our newer write is on its way through the watch
	}
	if mis.DeletionTimestamp != nil {
		return h.finalize(mis)
	}
	if h.paused(mis) {
		return h.writeStatus(mis, observation{paused: true})
	}
	if !inventory.SelectorHasFinalizer(mis) {
		updated, err := h.update(inventory.SelectorWithFinalizer(mis))
		if err == nil {
			// The claim may follow at once: the finalizer that protects it
			// is confirmed, whatever the cache shows yet.
			h.alloc.finalizerWritten(mis)
			h.alloc.Enqueue(mis.Namespace)
		}
		return updated, err
	}
	if _, ok := machineOwner(mis); !ok {
		return h.writeStatus(mis, observation{waitingMachine: true})
	}
	if _, err := mis.Spec.Selector.AsSelector(); err != nil {
		return h.writeStatus(mis, observation{selectorErr: err})
	}

	mi, obs, err := h.repair(mis)
	if err != nil {
		return mis, err
	}
	if mi != nil && inventory.Quarantined(mi) && !mis.Status.Ready {
		return h.giveUp(mis, mi)
	}
	if mi == nil {
		if !obs.inventoryDeleted {
			h.alloc.Enqueue(mis.Namespace)
			var v Verdict
			v, obs.judged = h.alloc.verdict(mis.UID)
			obs.claimErr = v.ClaimErr
			if obs.judged && obs.claimErr == "" {
				obs.whyNot = h.whyNotMessage(mis, v)
				// Inventories change class without waking waiting selectors
				// (a claim elsewhere, a cordon): keep the message current.
				h.selectors.EnqueueAfter(mis.Namespace, mis.Name, whyNotRecheck)
			}
			obs.spreadWait = v.Spread
		}
		return h.writeStatus(mis, obs)
	}
	h.whyNots.forget(mis.UID) // not waiting any more
	obs.inventory = mi
	return h.bootstrap(mis, mi, obs)
}

// repair finds the claimed inventory through the owner index: the
// inventory's ownerRef is authoritative, status.machineInventoryRef only
// mirrors it (docs/contracts.md, Cluster API).
func (h *handler) repair(mis *elementalv1.MachineInventorySelector) (*elementalv1.MachineInventory, observation, error) {
	// Includes a claim just confirmed that the cache does not show yet.
	owned, err := h.alloc.owned(mis.UID)
	if err != nil {
		return nil, observation{}, err
	}
	switch len(owned) {
	case 0:
		recorded := mis.Status.MachineInventoryRef != nil && mis.Status.MachineInventoryRef.Name != ""
		if recorded && mis.Status.Ready {
			// CAPI forbids reverting ready: say what happened and keep the ref.
			if conditionReason(mis.Status.Conditions, elementalv1.ConditionReady) != elementalv1.ReasonInventoryDeleted {
				h.recorder.Eventf(mis, corev1.EventTypeWarning, "InventoryDeleted", "inventory %s was deleted while in use; delete the Machine to replace it", mis.Status.MachineInventoryRef.Name)
			}
			return nil, observation{inventoryDeleted: true}, nil
		}
		if recorded {
			// Lost before bootstrap finished: clear the ref and claim another.
			h.recorder.Eventf(mis, corev1.EventTypeWarning, "InventoryDeleted", "inventory %s went away before bootstrap; claiming another", mis.Status.MachineInventoryRef.Name)
		}
		return nil, observation{}, nil
	case 1:
		return owned[0], observation{}, nil
	}
	// Only possible if two writers ran without leader election: keep one.
	sort.Slice(owned, func(i, j int) bool { return owned[i].Name < owned[j].Name })
	keep := owned[0]
	if ref := mis.Status.MachineInventoryRef; ref != nil {
		for _, mi := range owned {
			if mi.Name == ref.Name {
				keep = mi
			}
		}
	}
	for _, mi := range owned {
		if mi.Name == keep.Name {
			continue
		}
		h.recorder.Eventf(mis, corev1.EventTypeWarning, "InventoryClaimed", "selector held two inventories; releasing %s", mi.Name)
		if err := h.release(mis, mi); err != nil {
			return nil, observation{}, err
		}
	}
	return keep, observation{}, nil
}

// bootstrap writes the bootstrap plan once, then follows the agent's verdict.
//
// One Normal Event per adoption tells of the claim: BootstrapPlanWritten
// names the inventory when the plan follows the claim at once (the usual
// case), InventoryClaimed comes first only when the plan has to wait. A
// claim is news until the status records it.
func (h *handler) bootstrap(mis *elementalv1.MachineInventorySelector, mi *elementalv1.MachineInventory, obs observation) (*elementalv1.MachineInventorySelector, error) {
	announced := refName(mis.Status.MachineInventoryRef) == mi.Name
	announce := func() {
		if !announced {
			h.recorder.Eventf(mis, corev1.EventTypeNormal, "InventoryClaimed", "claimed inventory %s", mi.Name)
		}
	}
	secret, err := h.secrets.Cache().Get(mi.Namespace, mi.Name)
	if err != nil || !plans.OwnedBy(secret, mi) {
		// The inventory controller creates it; its event brings us back.
		announce()
		obs.bootstrapMissing = "waiting for the plan secret of inventory " + mi.Name
		return h.writeStatus(mis, obs)
	}
	if mis.Status.BootstrapPlanChecksum != "" && announced {
		h.planned.forget(mis.UID) // recorded
		obs.checksum = mis.Status.BootstrapPlanChecksum
		obs.plan = plans.Observe(secret.Data, obs.checksum)
		return h.writeStatusWithEvents(mis, obs)
	}
	// Written by this process, status not yet (deferred while the agent
	// works): the Secret still holds it (or the cache is behind our write:
	// the claim now hands the selector on before the watch, so a second run
	// can come before the Secret's event), so there is nothing to read or
	// write again.
	if sum, fromRV, ok := h.planned.get(mis.UID, mi.Name); ok &&
		(plans.Checksum(secret.Data[plans.KeyPlan]) == sum || secret.ResourceVersion == fromRV) {
		obs.checksum = sum
		obs.plan = plans.Observe(secret.Data, obs.checksum)
		obs.planUnseen = plans.Checksum(secret.Data[plans.KeyPlan]) != sum
		return h.writeStatusWithEvents(mis, obs)
	}

	script, missing := h.bootstrapData(mis)
	if missing != "" {
		announce()
		obs.bootstrapMissing = missing
		h.selectors.EnqueueAfter(mis.Namespace, mis.Name, bootstrapRetry)
		return h.writeStatus(mis, obs)
	}
	plan, dropped, err := plans.Bootstrap(mi.Name, script, mi.Labels)
	if err != nil {
		announce()
		obs.planErr = err
		return h.writeStatus(mis, obs)
	}
	obs.checksum = plans.Checksum(plan)
	// Already there (written before a crash, or before a deferred status
	// write): the plan is deterministic, so there is nothing to write.
	if plans.Checksum(secret.Data[plans.KeyPlan]) != obs.checksum {
		if _, err := h.secrets.Patch(secret.Namespace, secret.Name, types.MergePatchType, plans.Patch(plan, elementalv1.PlanTypeBootstrap)); err != nil {
			if apierrors.IsNotFound(err) {
				return mis, err // deleted under us: retry from a fresh view
			}
			announce()
			obs.planErr = fmt.Errorf("writing the bootstrap plan: %w", err)
			obs.checksum = ""
			if _, serr := h.writeStatus(mis, obs); serr != nil {
				return mis, serr
			}
			return mis, err
		}
		msg := "bootstrap plan written to " + mi.Name
		if !announced {
			msg = "claimed inventory " + mi.Name + " and wrote its bootstrap plan"
		}
		if len(dropped) > 0 {
			msg += "; labels the kubelet refuses were left out: " + strings.Join(dropped, ", ")
		}
		h.recorder.Event(mis, corev1.EventTypeNormal, "BootstrapPlanWritten", msg)
		obs.planUnseen = true // the cache shows the Secret as it was
	}
	h.planned.set(mis.UID, mi.Name, obs.checksum, secret.ResourceVersion)
	// The agent cannot have applied the new plan yet, but a re-write after a
	// crash is byte-identical and may already be applied.
	obs.plan = plans.Observe(secret.Data, obs.checksum)
	return h.writeStatusWithEvents(mis, obs)
}

// bootstrapData reads Machine.spec.bootstrap.dataSecretName → Secret key
// `value`. Anything missing is not an error, just not there yet.
func (h *handler) bootstrapData(mis *elementalv1.MachineInventorySelector) ([]byte, string) {
	ref, _ := machineOwner(mis)
	machine, err := h.machines.Get(mis.Namespace, ref.Name)
	if err != nil {
		return nil, "waiting for Machine " + ref.Name
	}
	name := machine.Spec.Bootstrap.DataSecretName
	if name == nil || *name == "" {
		return nil, "Machine " + ref.Name + " has no bootstrap data secret yet"
	}
	// A direct read: bootstrap Secrets are Rancher's, not in our cache.
	secret, err := h.k8s.CoreV1().Secrets(mis.Namespace).Get(context.Background(), *name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Sprintf("bootstrap data secret %s: %v", *name, err)
	}
	if len(secret.Data["value"]) == 0 {
		return nil, "bootstrap data secret " + *name + " has no value yet"
	}
	return secret.Data["value"], ""
}

// writeStatusWithEvents records plan outcome transitions, then writes.
func (h *handler) writeStatusWithEvents(mis *elementalv1.MachineInventorySelector, obs observation) (*elementalv1.MachineInventorySelector, error) {
	obs.releasedHosts = h.releasedHosts(mis)
	obs, status := h.confirmAgentWait(mis, obs)
	if !apiequality.Semantic.DeepEqual(mis.Status, status) {
		before := conditionReason(mis.Status.Conditions, elementalv1.ConditionBootstrapReady)
		after := conditionReason(status.Conditions, elementalv1.ConditionBootstrapReady)
		if before != after && after == elementalv1.ReasonBootstrapPlanFailed {
			h.recorder.Event(mis, corev1.EventTypeWarning, "BootstrapPlanFailed", obs.plan.FailureMessage("bootstrap plan on "+obs.inventory.Name))
		}
	}
	return h.writeStatusValue(mis, obs, status)
}

func conditionReason(conds []metav1.Condition, typ string) string {
	for _, c := range conds {
		if c.Type == typ {
			return c.Reason
		}
	}
	return ""
}

// writeStatus is where selector status is written: an UpdateStatus of the
// object we read, carrying its resourceVersion, so a newer write by Rancher
// (providerID, addresses) makes ours conflict instead of being clobbered.
func (h *handler) writeStatus(mis *elementalv1.MachineInventorySelector, obs observation) (*elementalv1.MachineInventorySelector, error) {
	obs.releasedHosts = h.releasedHosts(mis)
	return h.writeStatusValue(mis, obs, buildStatus(mis, obs))
}

func (h *handler) writeStatusValue(mis *elementalv1.MachineInventorySelector, obs observation, status elementalv1.MachineInventorySelectorStatus) (*elementalv1.MachineInventorySelector, error) {
	if apiequality.Semantic.DeepEqual(mis.Status, status) {
		return mis, nil
	}
	if h.deferTransient(mis, obs, status) {
		return mis, nil
	}
	if status.Ready && !mis.Status.Ready {
		h.log(mis).WithField("inventory", status.MachineInventoryRef.Name).Info("selector ready")
		metrics.AdoptionSeconds.Observe(time.Since(mis.CreationTimestamp.Time).Seconds())
	}
	updated := mis.DeepCopy()
	updated.Status = status
	updated, err := h.selectors.UpdateStatus(updated)
	if err == nil {
		h.written.Wrote(mis)
	}
	return updated, err
}

func (h *handler) update(mis *elementalv1.MachineInventorySelector) (*elementalv1.MachineInventorySelector, error) {
	updated, err := h.selectors.Update(mis)
	if err == nil {
		h.written.Wrote(mis)
	}
	return updated, err
}
