package machineinventoryselectortemplate_test

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// autoscalerNode models how the cluster-autoscaler's Cluster API provider
// (kubernetes/autoscaler, cluster-autoscaler/cloudprovider/clusterapi) turns
// an infrastructure machine template into the node of a scale-from-zero
// simulation. The module is far too large to import for a test, so its
// reading is reproduced here step by step:
//
//   - resourceCapacityFromInfrastructureObject: status.capacity read with
//     unstructured.NestedStringMap (so every value must be a string), each
//     value parsed with resource.ParseQuantity, unparsable ones skipped;
//   - InstanceCapacity: pods defaults to 110 (defaultMaxPods) when no
//     annotation sets it (we set none on the MachineDeployment here);
//   - CanScaleFromZero: both cpu and memory must be present;
//   - systemInfoFromInfrastructureObject: status.nodeInfo read with
//     NestedStringMap, keeping architecture and operatingSystem;
//   - nodegroup.TemplateNodeInfo/buildTemplateLabels: capacity = allocatable,
//     labels kubernetes.io/arch and kubernetes.io/os from the system info.
//
// It returns an error where the autoscaler would decline to scale from zero.
func autoscalerNode(infra *unstructured.Unstructured) (*corev1.Node, error) {
	capacity := map[corev1.ResourceName]resource.Quantity{}
	if raw, found, err := unstructured.NestedStringMap(infra.Object, "status", "capacity"); found && err == nil {
		for k, v := range raw {
			if q, err := resource.ParseQuantity(v); err == nil {
				capacity[corev1.ResourceName(k)] = q
			}
		}
	} else if err != nil {
		return nil, fmt.Errorf("status.capacity unreadable as a string map: %w", err)
	}
	capacity[corev1.ResourcePods] = *resource.NewQuantity(110, resource.DecimalSI)
	_, cpuOK := capacity[corev1.ResourceCPU]
	_, memOK := capacity[corev1.ResourceMemory]
	if !cpuOK || !memOK {
		return nil, fmt.Errorf("cannot scale from zero: capacity %v lacks cpu or memory", capacity)
	}
	nsi := corev1.NodeSystemInfo{}
	raw, found, err := unstructured.NestedStringMap(infra.Object, "status", "nodeInfo")
	if err != nil {
		return nil, fmt.Errorf("status.nodeInfo unreadable as a string map: %w", err)
	}
	if found {
		nsi.Architecture, nsi.OperatingSystem = raw["architecture"], raw["operatingSystem"]
	}
	node := &corev1.Node{}
	node.Labels = map[string]string{corev1.LabelArchStable: nsi.Architecture, corev1.LabelOSStable: nsi.OperatingSystem}
	node.Status.NodeInfo = nsi
	node.Status.Capacity = capacity
	node.Status.Allocatable = capacity
	return node, nil
}
