package machineinventoryselector

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
	"github.com/elemental-operator/elemental-operator/pkg/stale"
)

func TestTransientOf(t *testing.T) {
	mi := unitInventory("mi-1", nil)
	recorded := func(name string) func(*elementalv1.MachineInventorySelector) {
		return func(mis *elementalv1.MachineInventorySelector) {
			mis.Status.MachineInventoryRef = &corev1.LocalObjectReference{Name: name}
		}
	}
	cases := []struct {
		name   string
		before func(*elementalv1.MachineInventorySelector)
		obs    observation
		kind   transientKind
		key    string
	}{
		{name: "paused is written at once", obs: observation{paused: true}, kind: notTransient},
		{name: "waiting for the allocator, not judged yet", obs: observation{}, kind: awaitingVerdict},
		{name: "waiting for the allocator, judged", obs: observation{judged: true}, kind: awaitingVerdict},
		{name: "claim failed is written at once", obs: observation{judged: true, claimErr: "x"}, kind: notTransient},
		{name: "waiting for the owner Machine", obs: observation{waitingMachine: true}, kind: awaitingOthers,
			key: elementalv1.ReasonWaitingForInventory + "/"},
		{name: "invalid selector is written at once", obs: observation{selectorErr: errors.New("bad")}, kind: notTransient},
		{name: "waiting for the agent, keyed by checksum", obs: observation{inventory: mi, checksum: "sum"}, kind: awaitingOthers,
			key: elementalv1.ReasonSuccessfullyUpdatedPlan + "/sum"},
		{name: "waiting for the agent, our cache does not show the plan yet", obs: observation{inventory: mi, checksum: "sum", planUnseen: true}, kind: awaitingWatch},
		{name: "missing bootstrap data is written at once", obs: observation{inventory: mi, bootstrapMissing: "no data"}, kind: notTransient},
		{name: "failed plan is written at once", obs: observation{inventory: mi, checksum: "sum", plan: plans.Observed{State: elementalv1.PlanFailed}}, kind: notTransient},
		{name: "ready is written at once", obs: observation{inventory: mi, checksum: "sum", plan: plans.Observed{State: elementalv1.PlanApplied}}, kind: notTransient},
		{name: "clearing a recorded ref is written at once", before: recorded("gone"), obs: observation{}, kind: notTransient},
		{name: "changing a recorded ref is written at once", before: recorded("other"), obs: observation{inventory: mi, checksum: "sum"}, kind: notTransient},
		{name: "the same recorded ref still waits on the agent", before: recorded("mi-1"), obs: observation{inventory: mi, checksum: "sum"}, kind: awaitingOthers,
			key: elementalv1.ReasonSuccessfullyUpdatedPlan + "/sum"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mis := unitSelector()
			if tc.before != nil {
				tc.before(mis)
			}
			kind, key := transientOf(mis, tc.obs, buildStatus(mis, tc.obs))
			assert.Equal(t, tc.kind, kind)
			assert.Equal(t, tc.key, key)
		})
	}
}

func TestConfirmAgentWait(t *testing.T) {
	mi := unitInventory("mi-1", nil)
	mi.UID = "mi-uid"
	plan := []byte(`{"instructions":[]}`)
	sum := plans.Checksum(plan)
	owned := []metav1.OwnerReference{{APIVersion: "elemental.cattle.io/v1beta1", Kind: "MachineInventory", Name: "mi-1", UID: "mi-uid", Controller: ptr.To(true)}}
	secret := func(owners []metav1.OwnerReference, agent map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "mi-1", OwnerReferences: owners},
			Data: map[string][]byte{plans.KeyPlan: plan}}
		for k, v := range agent {
			s.Data[k] = []byte(v)
		}
		return s
	}
	cases := []struct {
		name   string
		delay  time.Duration // transientDelay stand-in: 0 means the wait lasted
		obs    observation
		secret *corev1.Secret
		want   elementalv1.PlanState // after the confirmation
		reads  int
	}{
		{name: "the wait has not lasted: no read", delay: time.Hour, obs: observation{inventory: mi, checksum: sum},
			secret: secret(owned, map[string]string{plans.KeyAppliedChecksum: sum}), want: "", reads: 0},
		{name: "lasted, and the agent answered meanwhile", obs: observation{inventory: mi, checksum: sum},
			secret: secret(owned, map[string]string{plans.KeyAppliedChecksum: sum}), want: elementalv1.PlanApplied, reads: 1},
		{name: "lasted, and the agent failed meanwhile", obs: observation{inventory: mi, checksum: sum},
			secret: secret(owned, map[string]string{plans.KeyFailedChecksum: sum, "failure-count": "1"}), want: elementalv1.PlanFailed, reads: 1},
		{name: "lasted, no answer yet: written as seen", obs: observation{inventory: mi, checksum: sum},
			secret: secret(owned, nil), want: "", reads: 1},
		{name: "a Secret that is not the inventory's is not believed", obs: observation{inventory: mi, checksum: sum},
			secret: secret(nil, map[string]string{plans.KeyAppliedChecksum: sum}), want: "", reads: 1},
		{name: "the plan is not in our cache yet: not the agent's wait, no read", obs: observation{inventory: mi, checksum: sum, planUnseen: true},
			secret: secret(owned, map[string]string{plans.KeyAppliedChecksum: sum}), want: "", reads: 0},
		{name: "not a wait on the agent: no read", obs: observation{inventory: mi, bootstrapMissing: "no data"},
			secret: secret(owned, nil), want: "", reads: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k8s := fake.NewClientset(tc.secret)
			h := &handler{k8s: k8s, deferred: stale.NewWindow(tc.delay)}
			got, status := h.confirmAgentWait(unitSelector(), tc.obs)
			want := buildStatus(unitSelector(), got)
			assert.Equal(t, conditionReason(want.Conditions, elementalv1.ConditionReady), conditionReason(status.Conditions, elementalv1.ConditionReady),
				"the status is the observation's")
			assert.Equal(t, want.Ready, status.Ready)
			assert.Equal(t, tc.want, got.plan.State)
			assert.Len(t, k8s.Actions(), tc.reads)
		})
	}
	t.Run("the wait is written already: no read", func(t *testing.T) {
		k8s := fake.NewClientset(secret(owned, map[string]string{plans.KeyAppliedChecksum: sum}))
		h := &handler{k8s: k8s, deferred: stale.NewWindow(0)}
		mis := unitSelector()
		waiting := observation{inventory: mi, checksum: sum}
		mis.Status = buildStatus(mis, waiting)
		got, _ := h.confirmAgentWait(mis, waiting)
		assert.Empty(t, got.plan.State)
		assert.Empty(t, k8s.Actions())
	})
}
