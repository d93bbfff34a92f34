package machineinventoryselector

import (
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
)

// finalize gives the claimed inventory back (or deletes it, per its policy)
// and removes the finalizer at once: it never waits for the host
// (docs/contracts.md, Cluster API).
func (h *handler) finalize(mis *elementalv1.MachineInventorySelector) (*elementalv1.MachineInventorySelector, error) {
	if !inventory.SelectorHasFinalizer(mis) {
		return mis, nil
	}
	// Includes a claim of ours the cache does not show yet.
	owned, err := h.alloc.owned(mis.UID)
	if err != nil {
		return mis, err
	}
	for _, mi := range owned {
		if err := h.release(mis, mi); err != nil {
			return mis, err
		}
	}
	h.alloc.forget(mis.UID)
	h.whyNots.forget(mis.UID)
	h.written.Forget(mis.UID)
	h.deferred.Forget(mis.UID)
	h.planned.forget(mis.UID)
	return h.selectors.Update(inventory.SelectorWithoutFinalizer(mis))
}

// release ends a claim: a resettable inventory or one with release policy
// Delete is deleted (its own finalizer resets the host); otherwise the claim
// is dropped and the release annotation asks the inventory controller to
// clean the host and return it to the pool.
func (h *handler) release(mis *elementalv1.MachineInventorySelector, mi *elementalv1.MachineInventory) error {
	if inventory.DeleteOnRelease(mi) {
		uid := mi.UID
		err := h.inventories.Delete(mi.Namespace, mi.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		h.recorder.Eventf(mis, corev1.EventTypeNormal, "InventoryReleased", "deleted inventory %s (resettable or release policy Delete)", mi.Name)
		return nil
	}
	released := inventory.Release(mi, mis)
	// Optimistic lock: the cached resourceVersion guards against lost updates.
	if _, err := h.inventories.Update(released); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	h.recorder.Eventf(mis, corev1.EventTypeNormal, "InventoryReleased", "released inventory %s back to the pool", mi.Name)
	return nil
}
