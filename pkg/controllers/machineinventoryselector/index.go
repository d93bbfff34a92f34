package machineinventoryselector

import (
	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
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
	// ByPool maps a selector cloned from a template to its pool (poolOf), for topology spread.
	ByPool = "selector-by-pool"
)

func indexOwnerSelectorUID(mi *elementalv1.MachineInventory) ([]string, error) {
	if c, ok := inventory.ClaimOf(mi); ok {
		return []string{string(c.UID)}, nil
	}
	return nil, nil
}

func indexFree(mi *elementalv1.MachineInventory) ([]string, error) {
	if inventory.Free(mi) {
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
