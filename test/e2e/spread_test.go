package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

const zoneLabel = "topology.kubernetes.io/zone"

// The concurrency case with topology spread in use: 90 spread selectors of
// one pool race for 150 inventories in 3 zones (50 each), two replicas, the
// leader killed halfway: exactly 90 pairs, 30/30/30 per zone (a pick that
// ignored zones would almost never be even), never a double claim.
func TestTwoReplicasWithTopologySpread(t *testing.T) {
	ns := namespace(t)
	first := startOperator(t, ns)
	startOperator(t, ns)
	stop := watchInvariants(t, ns)
	require.NoError(t, testenv.Parallel(150, 16, func(i int) error {
		_, err := inventories.Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("host-%04d", i),
			Labels:     map[string]string{"element": "fire", zoneLabel: fmt.Sprintf("zone-%d", i%3)},
			Finalizers: []string{elementalv1.MachineInventoryFinalizer},
		}})
		return err
	}))
	spreadMachines := func(from, n int) {
		require.NoError(t, testenv.Parallel(n, 16, func(i int) error {
			_, err := rancher.CreateMachine(context.Background(), ns, fmt.Sprintf("m-%04d", from+i), testenv.MachineOptions{
				Selector:       elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}},
				Script:         "#!/bin/sh\necho bootstrap\n",
				TopologySpread: &elementalv1.TopologySpread{TopologyKey: zoneLabel, MaxSkew: 1, WhenUnsatisfiable: elementalv1.DoNotSchedule},
			})
			return err
		}))
	}
	spreadMachines(0, 60)
	time.Sleep(2 * time.Second) // pacing the load: let the adoption wave get under way before the kill
	first.kill()
	spreadMachines(60, 30)
	eventually(t, 3*time.Minute, func() error {
		st := observe(t, ns)
		if len(st.pairs) != 90 || st.ready != 90 {
			return fmt.Errorf("%d pairs, %d ready, %d waiting", len(st.pairs), st.ready, st.waiting)
		}
		return nil
	})
	stop()
	st := observe(t, ns)
	assert.Empty(t, st.doubleHeld)
	assert.Empty(t, st.doubleClaim)
	perZone := map[string]int{}
	for _, inv := range st.pairs {
		mi, err := inventories.Get(ns, inv, metav1.GetOptions{})
		require.NoError(t, err)
		perZone[mi.Labels[zoneLabel]]++
	}
	assert.Equal(t, map[string]int{"zone-0": 30, "zone-1": 30, "zone-2": 30}, perZone)
}
