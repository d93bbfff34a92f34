package inventory

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

func TestCapacity(t *testing.T) {
	host := func(labels map[string]string) *elementalv1.MachineInventory {
		mi := ready()
		mi.Labels = labels
		return mi
	}
	big := host(map[string]string{elementalv1.CPUTotalThreadsLabel: "16", elementalv1.CPUTotalCoresLabel: "8", elementalv1.TotalMemoryLabel: "34359738368", elementalv1.CPUVendorLabel: "GenuineIntel"})
	small := host(map[string]string{elementalv1.CPUTotalCoresLabel: "4", elementalv1.TotalMemoryLabel: "8589934592", elementalv1.CPUVendorLabel: "AuthenticAMD"})
	arm := host(map[string]string{elementalv1.CPUTotalThreadsLabel: "8", elementalv1.TotalMemoryLabel: "17179869184", corev1.LabelArchStable: "arm64"})
	bare := host(nil)
	garbage := host(map[string]string{elementalv1.CPUTotalThreadsLabel: "0", elementalv1.CPUTotalCoresLabel: "x", elementalv1.TotalMemoryLabel: "-1"})
	q := resource.MustParse
	cases := []struct {
		name string
		list []*elementalv1.MachineInventory
		cap  corev1.ResourceList
		info *elementalv1.NodeInfo
	}{
		{name: "empty pool publishes nothing"},
		{name: "one host: threads count as cpus", list: []*elementalv1.MachineInventory{big},
			cap: corev1.ResourceList{corev1.ResourceCPU: q("16"), corev1.ResourceMemory: q("32Gi")}, info: &elementalv1.NodeInfo{OperatingSystem: "linux", Architecture: "amd64"}},
		{name: "minimum of each resource; cores without threads", list: []*elementalv1.MachineInventory{big, small},
			cap: corev1.ResourceList{corev1.ResourceCPU: q("4"), corev1.ResourceMemory: q("8Gi")}, info: &elementalv1.NodeInfo{OperatingSystem: "linux", Architecture: "amd64"}},
		{name: "architectures disagree", list: []*elementalv1.MachineInventory{big, arm},
			cap: corev1.ResourceList{corev1.ResourceCPU: q("8"), corev1.ResourceMemory: q("16Gi")}, info: &elementalv1.NodeInfo{OperatingSystem: "linux"}},
		{name: "a host without facts hides capacity", list: []*elementalv1.MachineInventory{big, bare}, info: &elementalv1.NodeInfo{OperatingSystem: "linux"}},
		{name: "unparsable or zero facts are unknown", list: []*elementalv1.MachineInventory{garbage}, info: &elementalv1.NodeInfo{OperatingSystem: "linux"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			capacity, info := Capacity(tc.list)
			assert.Equal(t, len(tc.cap), len(capacity))
			for k, v := range tc.cap {
				got := capacity[k]
				assert.True(t, v.Equal(got), "%s: got %s want %s", k, got.String(), v.String())
			}
			assert.Equal(t, tc.info, info)
		})
	}
	// The serialised form is what the autoscaler parses (strings).
	capacity, _ := Capacity([]*elementalv1.MachineInventory{small})
	mem := capacity[corev1.ResourceMemory]
	assert.Equal(t, "8Gi", mem.String())
}
