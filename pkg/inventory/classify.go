package inventory

import (
	"fmt"
	"strings"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// Class is why an inventory is, or is not, available to a selector that
// matches it. Every inventory has exactly one class: the first that applies
// in the order of the constants.
type Class int

const (
	ClassDeleting Class = iota
	ClassClaimed
	ClassCordoned
	ClassPendingApproval
	// ClassNotReady: not free for any other reason (not Ready, not on the
	// empty plan, being released).
	ClassNotReady
	// ClassAvailable is exactly Free.
	ClassAvailable
)

// String is the class's name in status fields, messages and metric labels.
func (c Class) String() string {
	switch c {
	case ClassDeleting:
		return "deleting"
	case ClassClaimed:
		return "claimed"
	case ClassCordoned:
		return "cordoned"
	case ClassPendingApproval:
		return "pendingApproval"
	case ClassNotReady:
		return "notReady"
	default:
		return "available"
	}
}

// Classes lists every class in order.
var Classes = []Class{ClassDeleting, ClassClaimed, ClassCordoned, ClassPendingApproval, ClassNotReady, ClassAvailable}

// Classify returns the inventory's class.
func Classify(mi *elementalv1.MachineInventory) Class {
	switch {
	case Deleting(mi):
		return ClassDeleting
	case Claimed(mi):
		return ClassClaimed
	case Cordoned(mi):
		return ClassCordoned
	case PendingApproval(mi):
		return ClassPendingApproval
	case Free(mi):
		return ClassAvailable
	default:
		return ClassNotReady
	}
}

// Counts tallies inventories by class. CordonReason keeps the reason of the
// first cordoned inventory counted (by name, when the caller sorts), so a
// message can say why.
type Counts struct {
	ByClass      [numClasses]int
	CordonReason string
}

const numClasses = int(ClassAvailable) + 1

// Add counts one inventory.
func (c *Counts) Add(mi *elementalv1.MachineInventory) {
	class := Classify(mi)
	c.ByClass[class]++
	if class == ClassCordoned && c.CordonReason == "" {
		c.CordonReason = CordonReason(mi)
	}
}

// Get returns one class's count.
func (c Counts) Get(class Class) int { return c.ByClass[class] }

// Matching is the total: every inventory counted once.
func (c Counts) Matching() int {
	n := 0
	for _, v := range c.ByClass {
		n += v
	}
	return n
}

// maxReasonInMessage caps the cordon reason quoted in a message (a reason
// may carry an agent's output line).
const maxReasonInMessage = 120

// WhyNot is the message of a selector left waiting: how many inventories
// match and why none is available, e.g. "3 match: 2 claimed, 1 cordoned
// (quarantined: ...)". Classes with no inventory are left out.
func (c Counts) WhyNot() string {
	n := c.Matching()
	if n == 0 {
		return "no inventory matches the selector"
	}
	var parts []string
	labels := map[Class]string{
		ClassDeleting: "deleting", ClassClaimed: "claimed", ClassCordoned: "cordoned",
		ClassPendingApproval: "pending approval", ClassNotReady: "not ready", ClassAvailable: "available",
	}
	for _, class := range []Class{ClassClaimed, ClassCordoned, ClassPendingApproval, ClassNotReady, ClassDeleting, ClassAvailable} {
		v := c.ByClass[class]
		if v == 0 {
			continue
		}
		part := fmt.Sprintf("%d %s", v, labels[class])
		if class == ClassCordoned && c.CordonReason != "" {
			reason := c.CordonReason
			if len(reason) > maxReasonInMessage {
				reason = strings.ToValidUTF8(reason[:maxReasonInMessage], "") + "..."
			}
			part += " (" + reason + ")"
		}
		parts = append(parts, part)
	}
	return fmt.Sprintf("%d match: %s", n, strings.Join(parts, ", "))
}
