// Package machineinventoryselectortemplate keeps each template's capacity
// status current: how many inventories its selector matches, and how many of
// them are free, so an admin sees what a new machine pool could get before
// creating a cluster. It is the only writer of template status.
package machineinventoryselectortemplate

import (
	"context"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/conditions"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
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
	inventories.OnChange(ctx, "inventory-to-template", func(_ string, mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
		if mi == nil {
			return nil, nil
		}
		list, err := templates.Cache().List(mi.Namespace, labels.Everything())
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
		status.MatchingInventories, status.AvailableInventories = 0, 0
		conditions.Set(&status.Conditions, elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonInvalidSelector, err.Error(), t.Generation)
	} else {
		matching, err := h.inventories.List(t.Namespace, sel)
		if err != nil {
			return t, err
		}
		free := 0
		for _, mi := range matching {
			if inventory.Free(mi) {
				free++
			}
		}
		status.MatchingInventories, status.AvailableInventories = len(matching), free
		conditions.Set(&status.Conditions, elementalv1.ConditionReady, metav1.ConditionTrue, "ValidSelector", "", t.Generation)
	}
	if apiequality.Semantic.DeepEqual(t.Status, status) {
		return t, nil
	}
	out := t.DeepCopy()
	out.Status = status
	return h.templates.UpdateStatus(out)
}
