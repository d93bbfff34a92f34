package inventory

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// x86Vendors are the CPU vendor strings (CPUID) of 64-bit x86 hosts: the
// only architecture the hardware facts identify without doubt. Other hosts
// need a kubernetes.io/arch label (e.g. from a registration label template).
var x86Vendors = map[string]bool{"GenuineIntel": true, "AuthenticAMD": true, "HygonGenuine": true}

// Capacity is what a template publishes for Cluster API's autoscale from
// zero: the node a scale-up would get, so the minimum over the inventories
// it could get (the available ones) of the hardware facts they reported.
// A resource is published only when every one of them reports it (a host
// without facts could be the one claimed); nodeInfo.architecture only when
// they all agree. Nothing is published for an empty pool: the autoscaler
// then does not scale it from zero, which is right, as it could not grow.
func Capacity(available []*elementalv1.MachineInventory) (corev1.ResourceList, *elementalv1.NodeInfo) {
	if len(available) == 0 {
		return nil, nil
	}
	cpu, cpuOK := minFact(available, cpuOf)
	mem, memOK := minFact(available, func(mi *elementalv1.MachineInventory) int64 {
		return positive(mi.Labels[elementalv1.TotalMemoryLabel])
	})
	var capacity corev1.ResourceList
	if cpuOK || memOK {
		capacity = corev1.ResourceList{}
	}
	if cpuOK {
		capacity[corev1.ResourceCPU] = *resource.NewQuantity(cpu, resource.DecimalSI)
	}
	if memOK {
		capacity[corev1.ResourceMemory] = *resource.NewQuantity(mem, resource.BinarySI)
	}
	info := &elementalv1.NodeInfo{OperatingSystem: "linux"} // Elemental hosts and RKE2/K3s nodes are Linux
	arch := architectureOf(available[0])
	for _, mi := range available[1:] {
		if architectureOf(mi) != arch {
			arch = ""
			break
		}
	}
	info.Architecture = arch
	return capacity, info
}

func cpuOf(mi *elementalv1.MachineInventory) int64 {
	// A node's cpu capacity counts logical CPUs: threads when known.
	if v := positive(mi.Labels[elementalv1.CPUTotalThreadsLabel]); v > 0 {
		return v
	}
	return positive(mi.Labels[elementalv1.CPUTotalCoresLabel])
}

// architectureOf: an explicit kubernetes.io/arch label, else amd64 for x86
// vendors, else unknown ("").
func architectureOf(mi *elementalv1.MachineInventory) string {
	if a := mi.Labels[corev1.LabelArchStable]; a != "" {
		return a
	}
	if x86Vendors[mi.Labels[elementalv1.CPUVendorLabel]] {
		return "amd64"
	}
	return ""
}

// minFact is the minimum of fact over all inventories; false when any has none.
func minFact(list []*elementalv1.MachineInventory, fact func(*elementalv1.MachineInventory) int64) (int64, bool) {
	var low int64
	for i, mi := range list {
		v := fact(mi)
		if v <= 0 {
			return 0, false
		}
		if i == 0 || v < low {
			low = v
		}
	}
	return low, true
}

// positive parses a decimal fact; anything else (absent, garbage, zero, as
// ghw reports for some ARM CPUs) is 0: unknown.
func positive(s string) int64 {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0
	}
	return v
}
