// Package inventory is the one home of the rules about a MachineInventory
// that more than one component needs: who holds it (the claim), whether it
// may be claimed (free), whether it is on its way back to the pool
// (releasing) or out of it (deleting), its finalizer, the claim and release
// edits, and the order in which a host's agent is given access to its plan
// Secret. Everything here is pure: it reads and returns objects and never
// calls the API server. docs/architecture.md (Writers) says who applies each
// edit and when.
package inventory

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// SelectorKind is the kind of the claiming object.
const SelectorKind = "MachineInventorySelector"

// Claim is who holds an inventory: the selector named by its controller
// ownerRef.
type Claim struct {
	Selector string
	UID      types.UID
}

// ClaimOf returns the claim on an inventory: its controller ownerRef to a
// MachineInventorySelector of our API group and version. The allocator is the
// only writer of such a ref (ClaimBy), so a ref lacking any of these fields
// is not a claim.
func ClaimOf(mi *elementalv1.MachineInventory) (Claim, bool) {
	for _, ref := range mi.OwnerReferences {
		if isClaimRef(ref) {
			return Claim{Selector: ref.Name, UID: ref.UID}, true
		}
	}
	return Claim{}, false
}

func isClaimRef(ref metav1.OwnerReference) bool {
	return ref.Kind == SelectorKind &&
		ref.APIVersion == elementalv1.SchemeGroupVersion.String() &&
		ref.Controller != nil && *ref.Controller
}

// Claimed reports whether some selector holds the inventory.
func Claimed(mi *elementalv1.MachineInventory) bool {
	_, ok := ClaimOf(mi)
	return ok
}

// Deleting reports whether the inventory is being deleted.
func Deleting(mi *elementalv1.MachineInventory) bool {
	return mi.DeletionTimestamp != nil
}

// Releasing reports whether the inventory carries the release annotation:
// a selector gave it back and the inventory controller has not finished
// cleaning the host (docs/architecture.md, One adoption, step 5).
func Releasing(mi *elementalv1.MachineInventory) bool {
	return mi.Annotations[elementalv1.ReleaseAnnotation] != ""
}

// Free reports whether an inventory may be claimed (the candidates of the
// claim protocol, docs/contracts.md, Cluster API): unclaimed, not deleting,
// not releasing, not cordoned, not pending approval, Ready, with the empty
// plan.
func Free(mi *elementalv1.MachineInventory) bool {
	if Claimed(mi) || Deleting(mi) || Releasing(mi) || Cordoned(mi) || PendingApproval(mi) {
		return false
	}
	if mi.Status.Plan == nil || mi.Status.Plan.Type != elementalv1.PlanTypeEmpty {
		return false
	}
	return meta.IsStatusConditionTrue(mi.Status.Conditions, elementalv1.ConditionReady)
}

// DeleteOnRelease reports whether giving the inventory back means deleting
// it (its own finalizer then resets the host): it is resettable, or its
// release policy is Delete. Otherwise it is released with Release.
func DeleteOnRelease(mi *elementalv1.MachineInventory) bool {
	return mi.Annotations[elementalv1.ResettableAnnotation] == "true" ||
		mi.Annotations[elementalv1.ReleasePolicyAnnotation] == string(elementalv1.ReleasePolicyDelete)
}

// ResetOnDelete reports whether deleting the inventory first resets the
// host: resettable, and not marked to skip the reset.
func ResetOnDelete(mi *elementalv1.MachineInventory) bool {
	return mi.Annotations[elementalv1.ResettableAnnotation] == "true" &&
		mi.Annotations[elementalv1.SkipResetAnnotation] != "true"
}

// ClaimBy returns a copy of mi claimed by mis: a controller ownerRef to the
// selector is appended, other ownerRefs are kept. Written with the cached
// resourceVersion it is a compare-and-swap: it fails if anyone changed the
// inventory since it was judged free.
func ClaimBy(mi *elementalv1.MachineInventory, mis *elementalv1.MachineInventorySelector) *elementalv1.MachineInventory {
	controller := true
	claimed := mi.DeepCopy()
	claimed.OwnerReferences = append(claimed.OwnerReferences, metav1.OwnerReference{
		APIVersion: elementalv1.SchemeGroupVersion.String(),
		Kind:       SelectorKind,
		Name:       mis.Name,
		UID:        mis.UID,
		Controller: &controller,
	})
	return claimed
}

// Release returns a copy of mi given back by mis: every selector ownerRef
// with the selector's UID is dropped and the release annotation (the
// selector's name) asks the inventory controller to clean the host and
// return it to the pool.
func Release(mi *elementalv1.MachineInventory, mis *elementalv1.MachineInventorySelector) *elementalv1.MachineInventory {
	released := mi.DeepCopy()
	var refs []metav1.OwnerReference
	for _, ref := range released.OwnerReferences {
		if ref.Kind != SelectorKind || ref.UID != mis.UID {
			refs = append(refs, ref)
		}
	}
	released.OwnerReferences = refs
	if released.Annotations == nil {
		released.Annotations = map[string]string{}
	}
	released.Annotations[elementalv1.ReleaseAnnotation] = mis.Name
	return released
}

// Released returns a copy of mi without the release annotation: the host is
// back on the empty plan.
func Released(mi *elementalv1.MachineInventory) *elementalv1.MachineInventory {
	out := mi.DeepCopy()
	delete(out.Annotations, elementalv1.ReleaseAnnotation)
	return out
}
