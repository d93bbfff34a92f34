package machineinventoryselector

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// These tests cover the pure parts of the package (no API server involved,
// although TestMain of the package's other tests starts one): how the
// selector status is built, when an in-progress status is held back, and
// how an allocation pass pairs selectors with inventories.

func unitSelector() *elementalv1.MachineInventorySelector {
	return &elementalv1.MachineInventorySelector{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "sel", UID: "sel-uid", Generation: 3}}
}

func unitInventory(name string, labels map[string]string) *elementalv1.MachineInventory {
	return &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: labels}}
}

// wantStatus is what a buildStatus case checks: the reason of each
// condition ("" for absent) and the fields buildStatus owns.
type wantStatus struct {
	paused, inventoryReady, bootstrapReady, ready string
	readyTrue                                     bool
	ref                                           string
	checksum                                      string
	provisioned                                   bool
	addresses                                     []elementalv1.MachineAddress
}

func TestBuildStatus(t *testing.T) {
	mi := unitInventory("mi-1", map[string]string{elementalv1.InternalIPLabel: "10.0.0.1", elementalv1.HostnameLabel: "host-1"})
	applied := plans.Observed{State: elementalv1.PlanApplied}
	failed := plans.Observed{State: elementalv1.PlanFailed, FailureCount: 2, FailureOutput: "boom"}
	readyStatus := func(mis *elementalv1.MachineInventorySelector) {
		mis.Status.Ready = true
		mis.Status.MachineInventoryRef = &corev1.LocalObjectReference{Name: "mi-1"}
		mis.Status.BootstrapPlanChecksum = "sum"
	}
	cases := []struct {
		name   string
		before func(mis *elementalv1.MachineInventorySelector)
		obs    observation
		want   wantStatus
	}{
		{
			name: "paused: only the Paused condition changes",
			obs:  observation{paused: true},
			want: wantStatus{paused: elementalv1.ReasonPaused},
		},
		{
			name: "no owner Machine yet",
			obs:  observation{waitingMachine: true},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonWaitingForInventory,
				bootstrapReady: elementalv1.ReasonWaitingForBootstrapData, ready: elementalv1.ReasonWaitingForInventory},
		},
		{
			name: "invalid selector",
			obs:  observation{selectorErr: errors.New("bad")},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonWaitingForInventory,
				bootstrapReady: elementalv1.ReasonWaitingForBootstrapData, ready: elementalv1.ReasonInvalidSelector},
		},
		{
			name: "no free inventory matches",
			obs:  observation{judged: true},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonWaitingForInventory,
				bootstrapReady: elementalv1.ReasonWaitingForBootstrapData, ready: elementalv1.ReasonWaitingForInventory},
		},
		{
			name: "claim write failed",
			obs:  observation{judged: true, claimErr: "claiming inventory mi-1: forbidden"},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonFailedToAdoptInventory,
				bootstrapReady: elementalv1.ReasonWaitingForBootstrapData, ready: elementalv1.ReasonFailedToAdoptInventory},
		},
		{
			name: "a recorded ref is cleared when the inventory went before bootstrap",
			before: func(mis *elementalv1.MachineInventorySelector) {
				mis.Status.MachineInventoryRef = &corev1.LocalObjectReference{Name: "gone"}
			},
			obs: observation{judged: true},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonWaitingForInventory,
				bootstrapReady: elementalv1.ReasonWaitingForBootstrapData, ready: elementalv1.ReasonWaitingForInventory},
		},
		{
			name: "claimed, bootstrap data missing",
			obs:  observation{inventory: mi, bootstrapMissing: "waiting for Machine m"},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonSuccessfullyAdoptedInventory,
				bootstrapReady: elementalv1.ReasonWaitingForBootstrapData, ready: elementalv1.ReasonWaitingForBootstrapData, ref: "mi-1"},
		},
		{
			name: "claimed, plan write failed",
			obs:  observation{inventory: mi, planErr: errors.New("writing the bootstrap plan: denied")},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonSuccessfullyAdoptedInventory,
				bootstrapReady: elementalv1.ReasonWaitingForBootstrapData, ready: elementalv1.ReasonFailedToUpdatePlan, ref: "mi-1"},
		},
		{
			name: "plan written, agent not done",
			obs:  observation{inventory: mi, checksum: "sum"},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonSuccessfullyAdoptedInventory,
				bootstrapReady: elementalv1.ReasonWaitingForBootstrapPlan, ready: elementalv1.ReasonSuccessfullyUpdatedPlan, ref: "mi-1", checksum: "sum"},
		},
		{
			name: "plan failed",
			obs:  observation{inventory: mi, checksum: "sum", plan: failed},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonSuccessfullyAdoptedInventory,
				bootstrapReady: elementalv1.ReasonBootstrapPlanFailed, ready: elementalv1.ReasonBootstrapPlanFailed, ref: "mi-1", checksum: "sum"},
		},
		{
			name: "plan applied: ready, provisioned, addresses from the inventory's labels",
			obs:  observation{inventory: mi, checksum: "sum", plan: applied},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonSuccessfullyAdoptedInventory,
				bootstrapReady: elementalv1.ReasonBootstrapPlanApplied, ready: elementalv1.ReasonSelectorReady, readyTrue: true,
				ref: "mi-1", checksum: "sum", provisioned: true, addresses: []elementalv1.MachineAddress{
					{Type: elementalv1.MachineInternalIP, Address: "10.0.0.1"}, {Type: elementalv1.MachineHostName, Address: "host-1"},
				}},
		},
		{
			name: "plan applied with a providerID: no addresses of ours",
			before: func(mis *elementalv1.MachineInventorySelector) {
				mis.Spec.ProviderID = "elemental://mi-1"
			},
			obs: observation{inventory: mi, checksum: "sum", plan: applied},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonSuccessfullyAdoptedInventory,
				bootstrapReady: elementalv1.ReasonBootstrapPlanApplied, ready: elementalv1.ReasonSelectorReady, readyTrue: true,
				ref: "mi-1", checksum: "sum", provisioned: true},
		},
		{
			name: "addresses already set are kept",
			before: func(mis *elementalv1.MachineInventorySelector) {
				readyStatus(mis)
				mis.Status.Addresses = []elementalv1.MachineAddress{{Type: elementalv1.MachineExternalIP, Address: "1.2.3.4"}}
			},
			obs: observation{inventory: mi, checksum: "sum", plan: applied},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonSuccessfullyAdoptedInventory,
				bootstrapReady: elementalv1.ReasonBootstrapPlanApplied, ready: elementalv1.ReasonSelectorReady, readyTrue: true,
				ref: "mi-1", checksum: "sum", addresses: []elementalv1.MachineAddress{{Type: elementalv1.MachineExternalIP, Address: "1.2.3.4"}}},
		},
		{
			name:   "inventory deleted after ready: ready and the ref stay",
			before: readyStatus,
			obs:    observation{inventoryDeleted: true},
			want: wantStatus{paused: elementalv1.ReasonNotPaused, inventoryReady: elementalv1.ReasonFailedToAdoptInventory,
				bootstrapReady: elementalv1.ReasonWaitingForBootstrapData, ready: elementalv1.ReasonInventoryDeleted, readyTrue: true,
				ref: "mi-1", checksum: "sum"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mis := unitSelector()
			if tc.before != nil {
				tc.before(mis)
			}
			before := mis.DeepCopy()
			st := buildStatus(mis, tc.obs)
			assert.Equal(t, before, mis, "the input is not modified")
			got := wantStatus{
				paused:         conditionReason(st.Conditions, elementalv1.ConditionPaused),
				inventoryReady: conditionReason(st.Conditions, elementalv1.ConditionInventoryReady),
				bootstrapReady: conditionReason(st.Conditions, elementalv1.ConditionBootstrapReady),
				ready:          conditionReason(st.Conditions, elementalv1.ConditionReady),
				readyTrue:      st.Ready,
				ref:            refName(st.MachineInventoryRef),
				checksum:       st.BootstrapPlanChecksum,
				provisioned:    st.Initialization != nil && st.Initialization.Provisioned,
				addresses:      st.Addresses,
			}
			assert.Equal(t, tc.want, got)
			for _, c := range st.Conditions {
				assert.Equal(t, mis.Generation, c.ObservedGeneration, "condition %s", c.Type)
			}
			assert.Equal(t, st, buildStatus(&elementalv1.MachineInventorySelector{ObjectMeta: mis.ObjectMeta, Spec: mis.Spec, Status: st}, tc.obs),
				"building again from its own output changes nothing (no second write)")
		})
	}
}

func TestWaitingMessageNamesWhyNot(t *testing.T) {
	mis := &elementalv1.MachineInventorySelector{}
	mis.Namespace = "ns"
	why := "3 match: 2 claimed, 1 cordoned (quarantined: boom)"
	st := buildStatus(mis, observation{judged: true, whyNot: why})
	for _, typ := range []string{elementalv1.ConditionInventoryReady, elementalv1.ConditionReady} {
		c := meta.FindStatusCondition(st.Conditions, typ)
		if c == nil || !strings.HasSuffix(c.Message, why) || c.Reason != elementalv1.ReasonWaitingForInventory {
			t.Errorf("%s = %+v, want WaitingForInventory ending in %q", typ, c, why)
		}
	}
	// A failed claim says so, not why-not.
	st = buildStatus(mis, observation{judged: true, claimErr: "claiming inventory x: forbidden", whyNot: why})
	if c := meta.FindStatusCondition(st.Conditions, elementalv1.ConditionReady); c == nil || c.Reason != elementalv1.ReasonFailedToAdoptInventory {
		t.Errorf("Ready = %+v, want FailedToAdoptInventory", c)
	}
}
