package inventory

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

func annotate(kv ...string) func(*elementalv1.MachineInventory) {
	return func(mi *elementalv1.MachineInventory) {
		if mi.Annotations == nil {
			mi.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			mi.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func TestClassifyAndGates(t *testing.T) {
	now := metav1.Now()
	manual := string(elementalv1.ApprovalManual)
	claim := func(mi *elementalv1.MachineInventory) {
		mi.OwnerReferences = []metav1.OwnerReference{selectorRef("sel", "sel-uid", &yes)}
	}
	cases := []struct {
		name    string
		edits   []func(*elementalv1.MachineInventory)
		class   Class
		pending bool
	}{
		{name: "ready on the empty plan", class: ClassAvailable},
		{name: "manual, not approved", edits: []func(*elementalv1.MachineInventory){annotate(elementalv1.ApprovalAnnotation, manual)}, class: ClassPendingApproval, pending: true},
		{name: "manual, approved", edits: []func(*elementalv1.MachineInventory){annotate(elementalv1.ApprovalAnnotation, manual, elementalv1.ApprovedAnnotation, "true")}, class: ClassAvailable},
		{name: "manual, approved other than true", edits: []func(*elementalv1.MachineInventory){annotate(elementalv1.ApprovalAnnotation, manual, elementalv1.ApprovedAnnotation, "yes")}, class: ClassPendingApproval, pending: true},
		{name: "approval annotation other than Manual gates nothing", edits: []func(*elementalv1.MachineInventory){annotate(elementalv1.ApprovalAnnotation, "Auto")}, class: ClassAvailable},
		{name: "approved without approval required", edits: []func(*elementalv1.MachineInventory){annotate(elementalv1.ApprovedAnnotation, "true")}, class: ClassAvailable},
		{name: "cordoned", edits: []func(*elementalv1.MachineInventory){annotate(elementalv1.CordonedAnnotation, "disk")}, class: ClassCordoned},
		{name: "empty cordon is no cordon", edits: []func(*elementalv1.MachineInventory){annotate(elementalv1.CordonedAnnotation, "")}, class: ClassAvailable},
		{name: "cordoned beats pending", edits: []func(*elementalv1.MachineInventory){annotate(elementalv1.CordonedAnnotation, "x", elementalv1.ApprovalAnnotation, manual)}, class: ClassCordoned, pending: true},
		{name: "claimed beats cordoned", edits: []func(*elementalv1.MachineInventory){claim, annotate(elementalv1.CordonedAnnotation, "x")}, class: ClassClaimed},
		{name: "deleting beats claimed", edits: []func(*elementalv1.MachineInventory){claim, func(mi *elementalv1.MachineInventory) { mi.DeletionTimestamp = &now }}, class: ClassDeleting},
		{name: "pending beats not ready", edits: []func(*elementalv1.MachineInventory){annotate(elementalv1.ApprovalAnnotation, manual), func(mi *elementalv1.MachineInventory) { mi.Status.Conditions = nil }}, class: ClassPendingApproval, pending: true},
		{name: "not ready", edits: []func(*elementalv1.MachineInventory){func(mi *elementalv1.MachineInventory) { mi.Status.Conditions = nil }}, class: ClassNotReady},
		{name: "releasing is not ready", edits: []func(*elementalv1.MachineInventory){annotate(elementalv1.ReleaseAnnotation, "sel")}, class: ClassNotReady},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mi := ready()
			for _, e := range tc.edits {
				e(mi)
			}
			assert.Equal(t, tc.class, Classify(mi))
			assert.Equal(t, tc.class == ClassAvailable, Free(mi), "Free is exactly the available class")
			assert.Equal(t, tc.pending, PendingApproval(mi), "PendingApproval")
		})
	}
}

func TestCountsAndWhyNot(t *testing.T) {
	mk := func(edits ...func(*elementalv1.MachineInventory)) *elementalv1.MachineInventory {
		mi := ready()
		for _, e := range edits {
			e(mi)
		}
		return mi
	}
	claim := func(mi *elementalv1.MachineInventory) {
		mi.OwnerReferences = []metav1.OwnerReference{selectorRef("sel", "sel-uid", &yes)}
	}
	long := strings.Repeat("é", 100)
	cases := []struct {
		name string
		list []*elementalv1.MachineInventory
		want string
	}{
		{name: "none", want: "no inventory matches the selector"},
		{name: "the issue's example", list: []*elementalv1.MachineInventory{
			mk(claim), mk(claim), mk(annotate(elementalv1.CordonedAnnotation, "quarantined: bootstrap failed 3 times: boom")),
		}, want: "3 match: 2 claimed, 1 cordoned (quarantined: bootstrap failed 3 times: boom)"},
		{name: "first cordon reason is quoted", list: []*elementalv1.MachineInventory{
			mk(annotate(elementalv1.CordonedAnnotation, "first")), mk(annotate(elementalv1.CordonedAnnotation, "second")),
		}, want: "2 match: 2 cordoned (first)"},
		{name: "every class", list: []*elementalv1.MachineInventory{
			mk(claim), mk(annotate(elementalv1.ApprovalAnnotation, "Manual")), mk(func(mi *elementalv1.MachineInventory) { mi.Status.Conditions = nil }),
			mk(func(mi *elementalv1.MachineInventory) { now := metav1.Now(); mi.DeletionTimestamp = &now }), mk(),
		}, want: "5 match: 1 claimed, 1 pending approval, 1 not ready, 1 deleting, 1 available"},
		{name: "long reason is cut on a character boundary", list: []*elementalv1.MachineInventory{
			mk(annotate(elementalv1.CordonedAnnotation, long)),
		}, want: "1 match: 1 cordoned (" + strings.Repeat("é", 60) + "...)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Counts
			for _, mi := range tc.list {
				c.Add(mi)
			}
			assert.Equal(t, len(tc.list), c.Matching(), "every inventory counted once")
			assert.Equal(t, tc.want, c.WhyNot())
		})
	}
}
