package inventory

import (
	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// HasFinalizer reports whether the inventory carries our finalizer.
func HasFinalizer(mi *elementalv1.MachineInventory) bool {
	return contains(mi.Finalizers, elementalv1.MachineInventoryFinalizer)
}

// WithFinalizer returns a copy of mi with our finalizer appended.
func WithFinalizer(mi *elementalv1.MachineInventory) *elementalv1.MachineInventory {
	out := mi.DeepCopy()
	out.Finalizers = append(out.Finalizers, elementalv1.MachineInventoryFinalizer)
	return out
}

// WithoutFinalizer returns a copy of mi without our finalizer, every other
// finalizer kept in order.
func WithoutFinalizer(mi *elementalv1.MachineInventory) *elementalv1.MachineInventory {
	out := mi.DeepCopy()
	out.Finalizers = without(out.Finalizers, elementalv1.MachineInventoryFinalizer)
	return out
}

// SelectorHasFinalizer reports whether the selector carries our finalizer,
// which keeps it until its claim is released.
func SelectorHasFinalizer(mis *elementalv1.MachineInventorySelector) bool {
	return contains(mis.Finalizers, elementalv1.MachineInventorySelectorFinalizer)
}

// SelectorWithFinalizer returns a copy of mis with our finalizer appended.
func SelectorWithFinalizer(mis *elementalv1.MachineInventorySelector) *elementalv1.MachineInventorySelector {
	out := mis.DeepCopy()
	out.Finalizers = append(out.Finalizers, elementalv1.MachineInventorySelectorFinalizer)
	return out
}

// SelectorWithoutFinalizer returns a copy of mis without our finalizer.
func SelectorWithoutFinalizer(mis *elementalv1.MachineInventorySelector) *elementalv1.MachineInventorySelector {
	out := mis.DeepCopy()
	out.Finalizers = without(out.Finalizers, elementalv1.MachineInventorySelectorFinalizer)
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// without filters list into a new slice (nil when nothing is left, which
// the API omits just as it omits an empty list).
func without(list []string, s string) []string {
	var out []string
	for _, v := range list {
		if v != s {
			out = append(out, v)
		}
	}
	return out
}
