// Package machineinventoryselectortemplate keeps each template's capacity
// status current: how many inventories its selector matches, how many of
// them are free and why the others are not, so an admin sees what a new
// machine pool could get before creating a cluster; and the Cluster API
// autoscale-from-zero fields (capacity, nodeInfo). It is the only writer of
// template status.
package machineinventoryselectortemplate

import (
	"context"
	"strings"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/conditions"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/stale"
)

// coalesce batches inventory events: during a burst (a pool registering, an
// adoption wave) each template is recounted once per window, not per event.
const coalesce = time.Second

type handler struct {
	templates   elementalctl.MachineInventorySelectorTemplateController
	inventories elementalctl.MachineInventoryCache
}

// Register wires the template status handler and the inventory watch.
func Register(ctx context.Context, templates elementalctl.MachineInventorySelectorTemplateController, inventories elementalctl.MachineInventoryController) {
	h := &handler{templates: templates, inventories: inventories.Cache()}
	templates.OnChange(ctx, "machineinventoryselectortemplate-capacity", h.OnChange)
	// Only a changed (or removed) inventory triggers a recount: wrangler also
	// runs this handler whenever anything else enqueues the inventory.
	var changes stale.Changes
	inventories.OnChange(ctx, "inventory-to-template", func(key string, mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
		if !changes.Changed(key, mi) {
			return mi, nil
		}
		ns, _, _ := strings.Cut(key, "/")
		list, err := templates.Cache().List(ns, labels.Everything())
		if err != nil {
			return mi, err
		}
		for _, t := range list {
			templates.EnqueueAfter(t.Namespace, t.Name, coalesce)
		}
		return mi, nil
	})
}

// OnChange recounts one template from the namespace's inventories (cache).
func (h *handler) OnChange(_ string, t *elementalv1.MachineInventorySelectorTemplate) (*elementalv1.MachineInventorySelectorTemplate, error) {
	if t == nil || t.DeletionTimestamp != nil {
		return t, nil
	}
	status := *t.Status.DeepCopy()
	status.Conditions = conditions.DropLegacy(status.Conditions)
	status.ObservedGeneration = t.Generation
	sel, err := t.Spec.Template.Spec.Selector.AsSelector()
	if err != nil {
		setCounts(&status, inventory.Counts{})
		status.Capacity, status.NodeInfo = nil, nil
		conditions.Set(&status.Conditions, elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonInvalidSelector, err.Error(), t.Generation)
	} else {
		matching, err := h.inventories.List(t.Namespace, sel)
		if err != nil {
			return t, err
		}
		var counts inventory.Counts
		var available []*elementalv1.MachineInventory
		for _, mi := range matching {
			counts.Add(mi)
			if inventory.Classify(mi) == inventory.ClassAvailable {
				available = append(available, mi)
			}
		}
		setCounts(&status, counts)
		status.Capacity, status.NodeInfo = inventory.Capacity(available)
		conditions.Set(&status.Conditions, elementalv1.ConditionReady, metav1.ConditionTrue, "ValidSelector", "", t.Generation)
	}
	if apiequality.Semantic.DeepEqual(t.Status, status) {
		return t, nil
	}
	out := t.DeepCopy()
	out.Status = status
	return h.templates.UpdateStatus(out)
}

// setCounts writes the counts: matching, available and the why-not classes
// (each inventory once, so they add up to matching).
func setCounts(st *elementalv1.MachineInventorySelectorTemplateStatus, c inventory.Counts) {
	st.MatchingInventories = c.Matching()
	st.AvailableInventories = c.Get(inventory.ClassAvailable)
	st.DeletingInventories = c.Get(inventory.ClassDeleting)
	st.ClaimedInventories = c.Get(inventory.ClassClaimed)
	st.CordonedInventories = c.Get(inventory.ClassCordoned)
	st.PendingApprovalInventories = c.Get(inventory.ClassPendingApproval)
	st.NotReadyInventories = c.Get(inventory.ClassNotReady)
}
