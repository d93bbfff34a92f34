package machineinventoryselector

import (
	"k8s.io/apimachinery/pkg/api/meta"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// Cache index names.
const (
	// ByOwnerSelectorUID maps an inventory to the UID of the selector that claims it.
	ByOwnerSelectorUID = "owner-selector-uid"
	// FreeByNamespace maps a claimable inventory to its namespace.
	FreeByNamespace = "free-inventory"
	// WaitingByNamespace maps a selector that has no inventory recorded to its namespace.
	WaitingByNamespace = "waiting-selector"
	// ByCluster maps a selector to <namespace>/<CAPI cluster name>, for pause.
	ByCluster = "selector-by-cluster"
)

// claimOf returns the selector ownerRef of an inventory: the claim.
func claimOf(mi *elementalv1.MachineInventory) (name string, uid string, ok bool) {
	for _, ref := range mi.OwnerReferences {
		if ref.Kind == "MachineInventorySelector" && ref.APIVersion == elementalv1.SchemeGroupVersion.String() {
			return ref.Name, string(ref.UID), true
		}
	}
	return "", "", false
}

// Free reports whether an inventory may be claimed (the candidates of the
// claim protocol, see docs/contracts.md, Cluster API): unclaimed, not deleting, not being released, Ready, with the empty plan.
func Free(mi *elementalv1.MachineInventory) bool {
	if _, _, claimed := claimOf(mi); claimed {
		return false
	}
	if mi.DeletionTimestamp != nil || mi.Annotations[elementalv1.ReleaseAnnotation] != "" {
		return false
	}
	if mi.Status.Plan == nil || mi.Status.Plan.Type != elementalv1.PlanTypeEmpty {
		return false
	}
	return meta.IsStatusConditionTrue(mi.Status.Conditions, elementalv1.ConditionReady)
}

func indexOwnerSelectorUID(mi *elementalv1.MachineInventory) ([]string, error) {
	if _, uid, ok := claimOf(mi); ok {
		return []string{uid}, nil
	}
	return nil, nil
}

func indexFree(mi *elementalv1.MachineInventory) ([]string, error) {
	if Free(mi) {
		return []string{mi.Namespace}, nil
	}
	return nil, nil
}

func indexWaiting(mis *elementalv1.MachineInventorySelector) ([]string, error) {
	if mis.DeletionTimestamp == nil && (mis.Status.MachineInventoryRef == nil || mis.Status.MachineInventoryRef.Name == "") {
		return []string{mis.Namespace}, nil
	}
	return nil, nil
}

func indexCluster(mis *elementalv1.MachineInventorySelector) ([]string, error) {
	if c := mis.Labels[clusterNameLabel]; c != "" {
		return []string{mis.Namespace + "/" + c}, nil
	}
	return nil, nil
}
