package machineinventoryselector

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
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
