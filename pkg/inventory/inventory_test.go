package inventory

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

var yes, no = true, false

func selectorRef(name, uid string, controller *bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: elementalv1.SchemeGroupVersion.String(), Kind: SelectorKind, Name: name, UID: types.UID(uid), Controller: controller}
}

// ready is an inventory on the empty plan with Ready true: free unless a
// case changes it.
func ready() *elementalv1.MachineInventory {
	return &elementalv1.MachineInventory{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "mi", UID: "mi-uid"},
		Status: elementalv1.MachineInventoryStatus{
			Plan:       &elementalv1.PlanStatus{Type: elementalv1.PlanTypeEmpty},
			Conditions: []metav1.Condition{{Type: elementalv1.ConditionReady, Status: metav1.ConditionTrue}},
		},
	}
}

func TestStates(t *testing.T) {
	now := metav1.Now()
	cases := []struct {
		name      string
		edit      func(mi *elementalv1.MachineInventory)
		claim     *Claim
		free      bool
		releasing bool
		deleting  bool
	}{
		{name: "ready on the empty plan", edit: func(*elementalv1.MachineInventory) {}, free: true},
		{name: "claimed", edit: func(mi *elementalv1.MachineInventory) {
			mi.OwnerReferences = []metav1.OwnerReference{selectorRef("sel", "sel-uid", &yes)}
		}, claim: &Claim{Selector: "sel", UID: "sel-uid"}},
		{name: "claim after an unrelated ownerRef", edit: func(mi *elementalv1.MachineInventory) {
			mi.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: "x"}, selectorRef("sel", "sel-uid", &yes)}
		}, claim: &Claim{Selector: "sel", UID: "sel-uid"}},
		{name: "selector ref that is not the controller is no claim", edit: func(mi *elementalv1.MachineInventory) {
			mi.OwnerReferences = []metav1.OwnerReference{selectorRef("sel", "sel-uid", &no)}
		}, free: true},
		{name: "selector ref without controller field is no claim", edit: func(mi *elementalv1.MachineInventory) {
			mi.OwnerReferences = []metav1.OwnerReference{selectorRef("sel", "sel-uid", nil)}
		}, free: true},
		{name: "selector of another API version is no claim", edit: func(mi *elementalv1.MachineInventory) {
			ref := selectorRef("sel", "sel-uid", &yes)
			ref.APIVersion = "elemental.cattle.io/v1alpha1"
			mi.OwnerReferences = []metav1.OwnerReference{ref}
		}, free: true},
		{name: "releasing", edit: func(mi *elementalv1.MachineInventory) {
			mi.Annotations = map[string]string{elementalv1.ReleaseAnnotation: "sel"}
		}, releasing: true},
		{name: "empty release annotation is not releasing", edit: func(mi *elementalv1.MachineInventory) {
			mi.Annotations = map[string]string{elementalv1.ReleaseAnnotation: ""}
		}, free: true},
		{name: "deleting", edit: func(mi *elementalv1.MachineInventory) { mi.DeletionTimestamp = &now }, deleting: true},
		{name: "no plan yet", edit: func(mi *elementalv1.MachineInventory) { mi.Status.Plan = nil }},
		{name: "on the bootstrap plan", edit: func(mi *elementalv1.MachineInventory) { mi.Status.Plan.Type = elementalv1.PlanTypeBootstrap }},
		{name: "not ready", edit: func(mi *elementalv1.MachineInventory) { mi.Status.Conditions[0].Status = metav1.ConditionFalse }},
		{name: "no conditions", edit: func(mi *elementalv1.MachineInventory) { mi.Status.Conditions = nil }},
		{name: "claimed, releasing and deleting at once", edit: func(mi *elementalv1.MachineInventory) {
			mi.OwnerReferences = []metav1.OwnerReference{selectorRef("sel", "sel-uid", &yes)}
			mi.Annotations = map[string]string{elementalv1.ReleaseAnnotation: "old"}
			mi.DeletionTimestamp = &now
		}, claim: &Claim{Selector: "sel", UID: "sel-uid"}, releasing: true, deleting: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mi := ready()
			tc.edit(mi)
			claim, ok := ClaimOf(mi)
			if tc.claim == nil {
				assert.False(t, ok, "claimed")
			} else {
				assert.True(t, ok, "claimed")
				assert.Equal(t, *tc.claim, claim)
			}
			assert.Equal(t, tc.claim != nil, Claimed(mi), "Claimed")
			assert.Equal(t, tc.free, Free(mi), "Free")
			assert.Equal(t, tc.releasing, Releasing(mi), "Releasing")
			assert.Equal(t, tc.deleting, Deleting(mi), "Deleting")
		})
	}
}

func TestReleasePolicy(t *testing.T) {
	cases := []struct {
		name        string
		annotations map[string]string
		deleteOnRel bool
		resetOnDel  bool
	}{
		{name: "no annotations"},
		{name: "resettable", annotations: map[string]string{elementalv1.ResettableAnnotation: "true"}, deleteOnRel: true, resetOnDel: true},
		{name: "resettable but skip reset", annotations: map[string]string{elementalv1.ResettableAnnotation: "true", elementalv1.SkipResetAnnotation: "true"}, deleteOnRel: true},
		{name: "resettable other than true", annotations: map[string]string{elementalv1.ResettableAnnotation: "yes"}},
		{name: "release policy Delete", annotations: map[string]string{elementalv1.ReleasePolicyAnnotation: string(elementalv1.ReleasePolicyDelete)}, deleteOnRel: true},
		{name: "release policy other", annotations: map[string]string{elementalv1.ReleasePolicyAnnotation: "Keep"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mi := ready()
			mi.Annotations = tc.annotations
			assert.Equal(t, tc.deleteOnRel, DeleteOnRelease(mi), "DeleteOnRelease")
			assert.Equal(t, tc.resetOnDel, ResetOnDelete(mi), "ResetOnDelete")
		})
	}
}

func TestClaimAndRelease(t *testing.T) {
	mis := &elementalv1.MachineInventorySelector{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "sel", UID: "sel-uid"}}
	other := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "keep", UID: "keep-uid"}
	otherSelector := selectorRef("old", "old-uid", &yes)
	cases := []struct {
		name        string
		refs        []metav1.OwnerReference
		annotations map[string]string
		claimed     []metav1.OwnerReference
		released    []metav1.OwnerReference
		relAnn      map[string]string
		holder      string
	}{
		{
			name:     "unowned",
			claimed:  []metav1.OwnerReference{selectorRef("sel", "sel-uid", &yes)},
			released: nil,
			relAnn:   map[string]string{elementalv1.ReleaseAnnotation: "sel"},
			holder:   "sel",
		},
		{
			name:        "other refs and annotations are kept",
			refs:        []metav1.OwnerReference{other},
			annotations: map[string]string{"a": "b"},
			claimed:     []metav1.OwnerReference{other, selectorRef("sel", "sel-uid", &yes)},
			released:    []metav1.OwnerReference{other},
			relAnn:      map[string]string{"a": "b", elementalv1.ReleaseAnnotation: "sel"},
			holder:      "sel",
		},
		{
			name:     "release drops only this selector's refs",
			refs:     []metav1.OwnerReference{otherSelector},
			claimed:  []metav1.OwnerReference{otherSelector, selectorRef("sel", "sel-uid", &yes)},
			released: []metav1.OwnerReference{otherSelector},
			relAnn:   map[string]string{elementalv1.ReleaseAnnotation: "sel"},
			holder:   "old",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mi := ready()
			mi.ResourceVersion = "7"
			mi.OwnerReferences = tc.refs
			mi.Annotations = tc.annotations
			before := mi.DeepCopy()

			claimed := ClaimBy(mi, mis)
			assert.Equal(t, tc.claimed, claimed.OwnerReferences)
			assert.Equal(t, "7", claimed.ResourceVersion, "the claim is a compare-and-swap on the read version")
			c, ok := ClaimOf(claimed)
			assert.True(t, ok)
			assert.Equal(t, tc.holder, c.Selector, "the first claim ref names the holder")
			assert.False(t, Free(claimed))

			released := Release(claimed, mis)
			assert.Equal(t, tc.released, released.OwnerReferences)
			assert.Equal(t, tc.relAnn, released.Annotations)
			assert.True(t, Releasing(released))
			assert.False(t, Free(released))

			back := Released(released)
			assert.False(t, Releasing(back))
			assert.Equal(t, before, mi, "inputs are never modified")
		})
	}
}

func TestFinalizers(t *testing.T) {
	cases := []struct {
		name    string
		in      []string
		has     bool
		with    []string
		without []string
	}{
		{name: "none", in: nil, with: []string{elementalv1.MachineInventoryFinalizer}, without: nil},
		{name: "ours only", in: []string{elementalv1.MachineInventoryFinalizer}, has: true,
			with: []string{elementalv1.MachineInventoryFinalizer, elementalv1.MachineInventoryFinalizer}, without: nil},
		{name: "ours among others", in: []string{"a", elementalv1.MachineInventoryFinalizer, "b"}, has: true,
			with: []string{"a", elementalv1.MachineInventoryFinalizer, "b", elementalv1.MachineInventoryFinalizer}, without: []string{"a", "b"}},
		{name: "others only", in: []string{"a"}, with: []string{"a", elementalv1.MachineInventoryFinalizer}, without: []string{"a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mi := ready()
			mi.Finalizers = tc.in
			assert.Equal(t, tc.has, HasFinalizer(mi))
			assert.Equal(t, tc.with, WithFinalizer(mi).Finalizers)
			assert.Equal(t, tc.without, WithoutFinalizer(mi).Finalizers)
			assert.Equal(t, tc.in, mi.Finalizers, "input unchanged")
		})
	}
	mis := &elementalv1.MachineInventorySelector{}
	assert.False(t, SelectorHasFinalizer(mis))
	mis = SelectorWithFinalizer(mis)
	assert.True(t, SelectorHasFinalizer(mis))
	mis.Finalizers = append(mis.Finalizers, "other")
	assert.Equal(t, []string{"other"}, SelectorWithoutFinalizer(mis).Finalizers)
}

func TestAccessOrdering(t *testing.T) {
	mi := ready()
	ours := plans.NewSecret(mi)
	foreign := ours.DeepCopy()
	foreign.OwnerReferences = nil
	otherInventory := ours.DeepCopy()
	otherInventory.OwnerReferences[0].UID = "someone-else"
	cases := []struct {
		name     string
		secret   *corev1.Secret
		state    SecretState
		steady   []Step
		repair   []Step
		mayGrant bool
	}{
		{name: "missing: access, then the Secret", secret: nil, state: SecretMissing,
			steady: []Step{GrantAccess, CreatePlanSecret}, repair: []Step{GrantAccess, CreatePlanSecret}, mayGrant: true},
		{name: "ours: nothing, or access again on repair", secret: ours, state: SecretOurs,
			steady: nil, repair: []Step{GrantAccess}, mayGrant: true},
		{name: "foreign: never", secret: foreign, state: SecretForeign},
		{name: "another inventory's plan Secret is foreign", secret: otherInventory, state: SecretForeign},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			state := PlanSecretState(tc.secret, mi)
			assert.Equal(t, tc.state, state)
			assert.Equal(t, tc.steady, AccessSteps(state, false), "steady")
			assert.Equal(t, tc.repair, AccessSteps(state, true), "repair")
			assert.Equal(t, tc.mayGrant, MayHoldAccess(state))
			for _, steps := range [][]Step{AccessSteps(state, false), AccessSteps(state, true)} {
				for i, s := range steps {
					if s == CreatePlanSecret {
						assert.Contains(t, steps[:i], GrantAccess, "the plan Secret never comes before access")
					}
				}
			}
		})
	}
}
