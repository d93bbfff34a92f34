package machineinventoryselector

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

const (
	capiGroup        = "cluster.x-k8s.io"
	clusterNameLabel = "cluster.x-k8s.io/cluster-name"
	pausedAnnotation = "cluster.x-k8s.io/paused"
)

// machineOwner finds the owner Machine by group and kind, whatever the
// version (upstream broke on v1beta1 vs v1beta2), preferring the controller.
func machineOwner(mis *elementalv1.MachineInventorySelector) (metav1.OwnerReference, bool) {
	var found *metav1.OwnerReference
	for i, ref := range mis.OwnerReferences {
		group, _, _ := strings.Cut(ref.APIVersion, "/")
		if group != capiGroup || ref.Kind != "Machine" {
			continue
		}
		if found == nil || (ref.Controller != nil && *ref.Controller) {
			found = &mis.OwnerReferences[i]
		}
	}
	if found == nil {
		return metav1.OwnerReference{}, false
	}
	return *found, true
}
