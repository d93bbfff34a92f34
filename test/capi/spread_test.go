package capi

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

const zoneLabel = "topology.kubernetes.io/zone"

// Topology spread with the real Cluster API manager: MachineDeployments
// whose template carries spec.template.spec.topologySpread, over simulated
// hosts (inventories answered by simulated agents) labelled by zone.
func TestTopologySpread(t *testing.T) {
	dns := &elementalv1.TopologySpread{TopologyKey: zoneLabel, MaxSkew: 1, WhenUnsatisfiable: elementalv1.DoNotSchedule}

	t.Run("six replicas over nine hosts in three zones are 2/2/2; nine are 3/3/3", func(t *testing.T) {
		ns := spreadNamespace(t)
		zonedInventories(t, ns, map[string]int{"a": 3, "b": 3, "c": 3})
		spreadTemplate(t, ns, "zoned", map[string]string{"pool": "spread"}, dns)
		createMachineDeployment(t, ns, "zoned-md", "zoned", 6)
		assert.Equal(t, map[string]int{"a": 2, "b": 2, "c": 2}, zonesOf(t, ns, waitReadySelectors(t, ns, "zoned-md", 6)))

		scale(t, ns, "zoned-md", 9)
		assert.Equal(t, map[string]int{"a": 3, "b": 3, "c": 3}, zonesOf(t, ns, waitReadySelectors(t, ns, "zoned-md", 9)))
	})

	t.Run("DoNotSchedule waits for a zone with nothing free and says which; a freed host there is taken", func(t *testing.T) {
		ns := spreadNamespace(t)
		zonedInventories(t, ns, map[string]int{"a": 2, "b": 2, "c": 2})
		// Another pool of the cluster holds both hosts of zone c.
		spreadTemplate(t, ns, "zone-c", map[string]string{zoneLabel: "c"}, nil)
		createMachineDeployment(t, ns, "zone-c-md", "zone-c", 2)
		waitReadySelectors(t, ns, "zone-c-md", 2)

		spreadTemplate(t, ns, "zoned", map[string]string{"pool": "spread"}, dns)
		createMachineDeployment(t, ns, "zoned-md", "zoned", 3)
		var waiting string
		testenv.Eventually(t, 3*time.Minute, func() error {
			sels := ownedSelectors(t, ns, "zoned-md")
			if len(sels) != 3 {
				return fmt.Errorf("%d selectors", len(sels))
			}
			ready, held := 0, 0
			for _, s := range sels {
				c := meta.FindStatusCondition(s.Status.Conditions, elementalv1.ConditionInventoryReady)
				switch {
				case s.Status.Ready:
					ready++
				case s.Status.MachineInventoryRef == nil && c != nil && strings.Contains(c.Message, zoneLabel+`="c"`):
					held++
					waiting = s.Name
				}
			}
			if ready != 2 || held != 1 {
				return fmt.Errorf("%d ready, %d held for zone c", ready, held)
			}
			return nil
		})
		sel, err := el.MachineInventorySelector().Get(ns, waiting, metav1.GetOptions{})
		require.NoError(t, err)
		c := meta.FindStatusCondition(sel.Status.Conditions, elementalv1.ConditionInventoryReady)
		assert.Equal(t, elementalv1.ReasonWaitingForInventory, c.Reason)
		t.Logf("waiting selector says: %s", c.Message)
		assert.Equal(t, map[string]int{"a": 1, "b": 1}, zonesOf(t, ns, readyOf(t, ns, "zoned-md")), "one in each zone that has a free host, none beyond maxSkew")

		// The other pool lets go of zone c: the waiting selector takes one there.
		scale(t, ns, "zone-c-md", 0)
		assert.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1}, zonesOf(t, ns, waitReadySelectors(t, ns, "zoned-md", 3)))
	})

	t.Run("ScheduleAnyway proceeds when a zone has nothing free", func(t *testing.T) {
		ns := spreadNamespace(t)
		zonedInventories(t, ns, map[string]int{"a": 2, "b": 2, "c": 2})
		spreadTemplate(t, ns, "zone-c", map[string]string{zoneLabel: "c"}, nil)
		createMachineDeployment(t, ns, "zone-c-md", "zone-c", 2)
		waitReadySelectors(t, ns, "zone-c-md", 2)

		anyway := &elementalv1.TopologySpread{TopologyKey: zoneLabel, MaxSkew: 1, WhenUnsatisfiable: elementalv1.ScheduleAnyway}
		spreadTemplate(t, ns, "zoned", map[string]string{"pool": "spread"}, anyway)
		createMachineDeployment(t, ns, "zoned-md", "zoned", 4)
		assert.Equal(t, map[string]int{"a": 2, "b": 2}, zonesOf(t, ns, waitReadySelectors(t, ns, "zoned-md", 4)))
	})

	t.Run("two pools of one cluster spread independently", func(t *testing.T) {
		ns := spreadNamespace(t)
		zonedInventories(t, ns, map[string]int{"a": 4, "b": 2, "c": 2})
		// Pool one may only use zone a: its three hosts are all there.
		spreadTemplate(t, ns, "only-a", map[string]string{zoneLabel: "a"}, dns)
		createMachineDeployment(t, ns, "only-a-md", "only-a", 3)
		assert.Equal(t, map[string]int{"a": 3}, zonesOf(t, ns, waitReadySelectors(t, ns, "only-a-md", 3)))
		// Pool two counts only its own claims: 1/1/1, zone a included. Were
		// the pools counted together, zone a (3) would be skipped.
		spreadTemplate(t, ns, "zoned", map[string]string{"pool": "spread"}, dns)
		createMachineDeployment(t, ns, "zoned-md", "zoned", 3)
		assert.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1}, zonesOf(t, ns, waitReadySelectors(t, ns, "zoned-md", 3)))
		claimsOnce(t, ns)
	})
}

// spreadNamespace is a namespace with simulated agents, the CAPI Cluster
// "fire" and its bootstrap Secret.
func spreadNamespace(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ns, err := env.NewNamespace(ctx, "spread")
	require.NoError(t, err)
	testenv.RunSimulatedAgents(ctx, env.Client, ns, 4)
	createUnstructured(t, clustersGVR, ns, map[string]interface{}{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
		"metadata": map[string]interface{}{"name": "fire", "namespace": ns},
		"spec":     map[string]interface{}{"clusterNetwork": map[string]interface{}{"pods": map[string]interface{}{"cidrBlocks": []interface{}{"10.42.0.0/16"}}}},
	})
	_, err = env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "fire-bootstrap"},
		Type:       "rke.cattle.io/bootstrap",
		Data:       map[string][]byte{"value": []byte("#!/bin/sh\necho installed\n")},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return ns
}

// zonedInventories creates hosts as the registration server would, per zone,
// labelled pool=spread and with the zone label, and waits until each acked
// the empty plan.
func zonedInventories(t *testing.T, ns string, perZone map[string]int) {
	t.Helper()
	var names []string
	for zone, n := range perZone {
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("host-%s-%d", zone, i)
			_, err := el.MachineInventory().Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: name,
				Labels:     map[string]string{"pool": "spread", zoneLabel: zone},
				Finalizers: []string{elementalv1.MachineInventoryFinalizer},
			}})
			require.NoError(t, err)
			names = append(names, name)
		}
	}
	for _, name := range names {
		waitInventory(t, ns, name, 2*time.Minute, func(mi *elementalv1.MachineInventory) error {
			if mi.Status.Phase != "Available" {
				return fmt.Errorf("phase %q", mi.Status.Phase)
			}
			return nil
		})
	}
}

func spreadTemplate(t *testing.T, ns, name string, match map[string]string, ts *elementalv1.TopologySpread) {
	t.Helper()
	_, err := el.MachineInventorySelectorTemplate().Create(&elementalv1.MachineInventorySelectorTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: elementalv1.MachineInventorySelectorTemplateSpec{Template: elementalv1.MachineInventorySelectorTemplateResource{
			Spec: elementalv1.MachineInventorySelectorSpec{Selector: elementalv1.LabelSelector{MatchLabels: match}, TopologySpread: ts},
		}},
	})
	require.NoError(t, err)
}

func scale(t *testing.T, ns, md string, replicas int) {
	t.Helper()
	_, err := dyn.Resource(mdGVR).Namespace(ns).Patch(context.Background(), md, types.MergePatchType,
		[]byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)), metav1.PatchOptions{})
	require.NoError(t, err)
}

// readyOf is selector → inventory for the ready selectors of a deployment.
func readyOf(t *testing.T, ns, md string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range ownedSelectors(t, ns, md) {
		if s.Status.Ready && s.Status.MachineInventoryRef != nil {
			out[s.Name] = s.Status.MachineInventoryRef.Name
		}
	}
	return out
}

// zonesOf counts the claimed inventories per zone, checking each claim
// against the inventory's own ownerRef.
func zonesOf(t *testing.T, ns string, adopted map[string]string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for mis, name := range adopted {
		mi, err := el.MachineInventory().Get(ns, name, metav1.GetOptions{})
		require.NoError(t, err)
		owner := metav1.GetControllerOf(mi)
		require.NotNil(t, owner, name)
		require.Equal(t, mis, owner.Name)
		out[mi.Labels[zoneLabel]]++
	}
	return out
}

// claimsOnce asserts no inventory is claimed twice and no selector holds two.
func claimsOnce(t *testing.T, ns string) {
	t.Helper()
	list, err := el.MachineInventory().List(ns, metav1.ListOptions{})
	require.NoError(t, err)
	held := map[string]string{}
	for _, mi := range list.Items {
		n := 0
		for _, ref := range mi.OwnerReferences {
			if ref.Kind == "MachineInventorySelector" {
				n++
				prev, dup := held[ref.Name]
				require.False(t, dup, "selector %s holds %s and %s", ref.Name, prev, mi.Name)
				held[ref.Name] = mi.Name
			}
		}
		require.LessOrEqual(t, n, 1, "inventory %s claimed %d times", mi.Name, n)
	}
}
