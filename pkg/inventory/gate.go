package inventory

import (
	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// ApprovalRequired reports whether the inventory was created under a
// MachineRegistration with approval: Manual (the registration server stamps
// it; registrations can never set it, see elementalv1.GateKeys).
func ApprovalRequired(mi *elementalv1.MachineInventory) bool {
	return mi.Annotations[elementalv1.ApprovalAnnotation] == string(elementalv1.ApprovalManual)
}

// Approved reports whether an admin (or a pre-approved identity list)
// approved the inventory.
func Approved(mi *elementalv1.MachineInventory) bool {
	return mi.Annotations[elementalv1.ApprovedAnnotation] == "true"
}

// PendingApproval: approval is required and not given, so it is never claimed.
func PendingApproval(mi *elementalv1.MachineInventory) bool {
	return ApprovalRequired(mi) && !Approved(mi)
}

// Cordoned reports whether the inventory carries a non-empty cordon reason:
// it is not claimed again, though a claim it already has stays.
func Cordoned(mi *elementalv1.MachineInventory) bool {
	return CordonReason(mi) != ""
}

// CordonReason is the cordon annotation's value ("" when not cordoned).
func CordonReason(mi *elementalv1.MachineInventory) string {
	return mi.Annotations[elementalv1.CordonedAnnotation]
}
