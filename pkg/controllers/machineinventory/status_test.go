package machineinventory

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

func secretWith(planType string, plan []byte, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{elementalv1.PlanTypeAnnotation: planType}},
		Data:       map[string][]byte{plans.KeyPlan: plan},
	}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func reason(st elementalv1.MachineInventoryStatus, typ string) string {
	c := meta.FindStatusCondition(st.Conditions, typ)
	if c == nil {
		return ""
	}
	return c.Reason
}

func TestLegacyConditionsAreDroppedBeforeWriting(t *testing.T) {
	mi := &elementalv1.MachineInventory{Status: elementalv1.MachineInventoryStatus{Conditions: []metav1.Condition{
		{Type: "Ready", Status: "True"},                      // wrangler-era: no reason, no time
		{Type: "SomethingElse", Status: "True", Reason: "X"}, // no time
	}}}
	st := buildStatus(mi, observation{secret: secretWith("empty", plans.Empty, nil)})
	for _, c := range st.Conditions {
		assert.NotEmpty(t, c.Reason, c.Type)
		assert.False(t, c.LastTransitionTime.IsZero(), c.Type)
	}
	assert.Nil(t, meta.FindStatusCondition(st.Conditions, "SomethingElse"))
}

func TestStatusIsStable(t *testing.T) {
	mi := &elementalv1.MachineInventory{}
	obs := observation{secret: secretWith("empty", plans.Empty, map[string]string{"applied-checksum": plans.EmptyChecksum})}
	first := buildStatus(mi, obs)
	mi.Status = first
	time.Sleep(1100 * time.Millisecond) // transition times have second precision
	assert.Equal(t, first, buildStatus(mi, obs), "an unchanged world must not produce a status write")
}

func TestPhases(t *testing.T) {
	ctrl := true
	owned := metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "MachineInventorySelector", Name: "sel", Controller: &ctrl}}}
	bootstrap := []byte(`{"files":[]}`)
	now := metav1.Now()
	cases := []struct {
		name   string
		meta   metav1.ObjectMeta
		obs    observation
		phase  string
		ready  string
		adopts string
	}{
		{"registered", metav1.ObjectMeta{}, observation{secret: secretWith("empty", plans.Empty, nil)}, "Registered", elementalv1.ReasonWaitingForPlan, elementalv1.ReasonWaitingToBeAdopted},
		{"available", metav1.ObjectMeta{}, observation{secret: secretWith("empty", plans.Empty, map[string]string{"applied-checksum": plans.EmptyChecksum})}, "Available", elementalv1.ReasonPlanSuccessfullyApplied, elementalv1.ReasonWaitingToBeAdopted},
		{"claimed, owner not yet pointing back", owned, observation{ownerName: "sel", owner: &elementalv1.MachineInventorySelector{}, secret: secretWith("bootstrap", bootstrap, map[string]string{"applied-checksum": plans.EmptyChecksum})}, "Claimed", elementalv1.ReasonWaitingForPlan, elementalv1.ReasonValidatingAdoption},
		{"provisioned", owned, observation{ownerName: "sel", owner: &elementalv1.MachineInventorySelector{Status: elementalv1.MachineInventorySelectorStatus{MachineInventoryRef: &corev1.LocalObjectReference{Name: "mi"}}}, secret: secretWith("bootstrap", bootstrap, map[string]string{"applied-checksum": plans.Checksum(bootstrap)})}, "Provisioned", elementalv1.ReasonPlanSuccessfullyApplied, elementalv1.ReasonSuccessfullyAdopted},
		{"owner points elsewhere", owned, observation{ownerName: "sel", owner: &elementalv1.MachineInventorySelector{Status: elementalv1.MachineInventorySelectorStatus{MachineInventoryRef: &corev1.LocalObjectReference{Name: "other"}}}, secret: secretWith("bootstrap", bootstrap, nil)}, "Claimed", elementalv1.ReasonWaitingForPlan, elementalv1.ReasonAdoptionFailure},
		{"owner missing", owned, observation{ownerName: "sel", secret: secretWith("bootstrap", bootstrap, nil)}, "Claimed", elementalv1.ReasonWaitingForPlan, elementalv1.ReasonAdoptionFailure},
		{"releasing", metav1.ObjectMeta{Annotations: map[string]string{elementalv1.ReleaseAnnotation: "sel"}}, observation{secret: secretWith("release", bootstrap, nil)}, "Releasing", elementalv1.ReasonReleasing, elementalv1.ReasonWaitingToBeAdopted},
		{"resetting", metav1.ObjectMeta{DeletionTimestamp: &now}, observation{resetState: resetPending, secret: secretWith("reset", bootstrap, nil)}, "Resetting", elementalv1.ReasonResetPending, elementalv1.ReasonWaitingToBeAdopted},
		{"deleting", metav1.ObjectMeta{DeletionTimestamp: &now}, observation{resetState: resetTimedOut, secret: secretWith("reset", bootstrap, nil)}, "Deleting", elementalv1.ReasonResetTimedOut, elementalv1.ReasonWaitingToBeAdopted},
		{"pending approval, agent acked", metav1.ObjectMeta{Annotations: map[string]string{elementalv1.ApprovalAnnotation: "Manual"}}, observation{secret: secretWith("empty", plans.Empty, map[string]string{"applied-checksum": plans.EmptyChecksum})}, "PendingApproval", elementalv1.ReasonPlanSuccessfullyApplied, elementalv1.ReasonWaitingToBeAdopted},
		{"pending approval before the agent acked", metav1.ObjectMeta{Annotations: map[string]string{elementalv1.ApprovalAnnotation: "Manual"}}, observation{secret: secretWith("empty", plans.Empty, nil)}, "PendingApproval", elementalv1.ReasonWaitingForPlan, elementalv1.ReasonWaitingToBeAdopted},
		{"approved", metav1.ObjectMeta{Annotations: map[string]string{elementalv1.ApprovalAnnotation: "Manual", elementalv1.ApprovedAnnotation: "true"}}, observation{secret: secretWith("empty", plans.Empty, map[string]string{"applied-checksum": plans.EmptyChecksum})}, "Available", elementalv1.ReasonPlanSuccessfullyApplied, elementalv1.ReasonWaitingToBeAdopted},
		{"cordoned", metav1.ObjectMeta{Annotations: map[string]string{elementalv1.CordonedAnnotation: "bad disk"}}, observation{secret: secretWith("empty", plans.Empty, map[string]string{"applied-checksum": plans.EmptyChecksum})}, "Cordoned", elementalv1.ReasonPlanSuccessfullyApplied, elementalv1.ReasonWaitingToBeAdopted},
		{"cordoned while claimed stays claimed", metav1.ObjectMeta{OwnerReferences: owned.OwnerReferences, Annotations: map[string]string{elementalv1.CordonedAnnotation: "x"}}, observation{ownerName: "sel", secret: secretWith("bootstrap", bootstrap, nil)}, "Claimed", elementalv1.ReasonWaitingForPlan, elementalv1.ReasonAdoptionFailure},
		{"name clash", metav1.ObjectMeta{}, observation{secretConflict: true, secret: secretWith("", []byte("x"), nil)}, "Registered", elementalv1.ReasonPlanCreationFailure, elementalv1.ReasonWaitingToBeAdopted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mi := &elementalv1.MachineInventory{ObjectMeta: tc.meta}
			mi.Name = "mi"
			st := buildStatus(mi, tc.obs)
			assert.Equal(t, tc.phase, st.Phase)
			assert.Equal(t, tc.ready, reason(st, elementalv1.ConditionReady))
			assert.Equal(t, tc.adopts, reason(st, elementalv1.ConditionAdoptionReady))
		})
	}
}

func TestApprovedCondition(t *testing.T) {
	obs := observation{secret: secretWith("empty", plans.Empty, map[string]string{"applied-checksum": plans.EmptyChecksum})}
	cases := []struct {
		name        string
		annotations map[string]string
		want        string // reason, "" for no condition
	}{
		{name: "auto: no condition"},
		{name: "manual, pending", annotations: map[string]string{elementalv1.ApprovalAnnotation: "Manual"}, want: elementalv1.ReasonPendingApproval},
		{name: "manual, approved", annotations: map[string]string{elementalv1.ApprovalAnnotation: "Manual", elementalv1.ApprovedAnnotation: "true"}, want: elementalv1.ReasonApproved},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mi := &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: "mi", Annotations: tc.annotations}}
			st := buildStatus(mi, obs)
			assert.Equal(t, tc.want, reason(st, elementalv1.ConditionApproved))
			if tc.want == elementalv1.ReasonPendingApproval {
				assert.False(t, meta.IsStatusConditionTrue(st.Conditions, elementalv1.ConditionApproved))
			}
		})
	}
}
