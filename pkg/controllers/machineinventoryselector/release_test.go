package machineinventoryselector_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// scaleDown does what CAPI does when a Machine goes: delete the selector,
// wait for it to disappear, then delete the Machine.
func scaleDown(t *testing.T, ns, name string) {
	t.Helper()
	require.NoError(t, selectors.Delete(ns, name, nil))
	eventually(t, 30*time.Second, func() error {
		_, err := selectors.Get(ns, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("selector still there: %v", err)
	})
	require.NoError(t, rancher.Machines.Delete(ns, name, nil))
}

func TestScaleDownReturnsTheHostToThePool(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	readyInventories(t, ns, "fire", 1, map[string]string{"element": "fire"})
	_, err := rancher.CreateMachine(ctx, ns, "first", testenv.MachineOptions{Selector: fire, Script: script})
	require.NoError(t, err)
	mis := waitSelector(t, ns, "first", time.Minute, isReady)
	inv := mis.Status.MachineInventoryRef.Name

	scaleDown(t, ns, "first")
	// Release plan, then the empty plan, both acked by the agent: Available again.
	eventually(t, time.Minute, func() error {
		mi, err := inventories.Get(ns, inv, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if mi.Status.Phase != "Available" || mi.Annotations[elementalv1.ReleaseAnnotation] != "" {
			return fmt.Errorf("phase %s, release %q", mi.Status.Phase, mi.Annotations[elementalv1.ReleaseAnnotation])
		}
		if len(mi.OwnerReferences) != 0 {
			return fmt.Errorf("still owned: %v", mi.OwnerReferences)
		}
		return nil
	})
	waitEvent(t, ns, "first", "InventoryReleased")

	// ... and another pool (another selector) can adopt it.
	other := elementalv1.LabelSelector{MatchExpressions: []elementalv1.LabelSelectorRequirement{{Key: "element", Operator: "In", Values: []string{"fire", "water"}}}}
	_, err = rancher.CreateMachine(ctx, ns, "second", testenv.MachineOptions{Selector: other, Script: script, Cluster: "other"})
	require.NoError(t, err)
	mis = waitSelector(t, ns, "second", time.Minute, isReady)
	assert.Equal(t, inv, mis.Status.MachineInventoryRef.Name)
}

func TestReleasePolicyDeleteAndResettableDeleteTheInventory(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	for _, tc := range []struct{ name, key, value string }{
		{"policy-delete", elementalv1.ReleasePolicyAnnotation, "Delete"},
		{"resettable", elementalv1.ResettableAnnotation, "true"},
	} {
		_, err := inventories.Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: tc.name, Labels: map[string]string{"pool": tc.name},
			Annotations: map[string]string{tc.key: tc.value, elementalv1.SkipResetAnnotation: "true"},
		}})
		require.NoError(t, err)
		sel := elementalv1.LabelSelector{MatchLabels: map[string]string{"pool": tc.name}}
		_, err = rancher.CreateMachine(ctx, ns, "m-"+tc.name, testenv.MachineOptions{Selector: sel, Script: script})
		require.NoError(t, err)
		waitSelector(t, ns, "m-"+tc.name, time.Minute, isReady)
		scaleDown(t, ns, "m-"+tc.name)
		eventually(t, 30*time.Second, func() error {
			_, err := inventories.Get(ns, tc.name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("inventory %s still there: %v", tc.name, err)
		})
	}
}

func TestInventoryDeletedBeforeBootstrapIsReplaced(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	readyInventories(t, ns, "fire", 2, map[string]string{"element": "fire"})
	// No bootstrap data yet: the selector claims and waits.
	_, err := rancher.CreateMachine(ctx, ns, "waiter", testenv.MachineOptions{Selector: fire})
	require.NoError(t, err)
	mis := waitSelector(t, ns, "waiter", time.Minute, func(m *elementalv1.MachineInventorySelector) error {
		if m.Status.MachineInventoryRef == nil {
			return fmt.Errorf("no claim yet")
		}
		return nil
	})
	first := mis.Status.MachineInventoryRef.Name
	require.NoError(t, inventories.Delete(ns, first, nil))
	waitSelector(t, ns, "waiter", time.Minute, func(m *elementalv1.MachineInventorySelector) error {
		if m.Status.MachineInventoryRef == nil || m.Status.MachineInventoryRef.Name == first {
			return fmt.Errorf("still on %v", m.Status.MachineInventoryRef)
		}
		return nil
	})
	waitEvent(t, ns, "waiter", "InventoryDeleted")
	require.NoError(t, rancher.CreateBootstrapSecret(ctx, ns, "waiter", script))
	require.NoError(t, rancher.SetBootstrapData(ns, "waiter"))
	waitSelector(t, ns, "waiter", time.Minute, isReady)
}

func TestInventoryDeletedAfterReadyIsReported(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	readyInventories(t, ns, "fire", 2, map[string]string{"element": "fire"})
	_, err := rancher.CreateMachine(ctx, ns, "in-use", testenv.MachineOptions{Selector: fire, Script: script})
	require.NoError(t, err)
	mis := waitSelector(t, ns, "in-use", time.Minute, isReady)
	require.NoError(t, inventories.Delete(ns, mis.Status.MachineInventoryRef.Name, nil))
	mis = waitSelector(t, ns, "in-use", time.Minute, hasReason(elementalv1.ConditionReady, elementalv1.ReasonInventoryDeleted))
	assert.True(t, mis.Status.Ready, "CAPI forbids reverting ready")
	waitEvent(t, ns, "in-use", "InventoryDeleted")
	testenv.Consistently(t, time.Second, func() error {
		if c := claims(t, ns); len(c) != 0 {
			return fmt.Errorf("a ready selector never silently takes a second host: %v", c)
		}
		return nil
	})
}

func TestSelectorDeletedWhileWaiting(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	_, err := rancher.CreateMachine(ctx, ns, "gone", testenv.MachineOptions{Selector: fire, Script: script})
	require.NoError(t, err)
	waitSelector(t, ns, "gone", 30*time.Second, hasReason(elementalv1.ConditionInventoryReady, elementalv1.ReasonWaitingForInventory))
	scaleDown(t, ns, "gone")
	// A host arriving later stays free.
	readyInventories(t, ns, "fire", 1, map[string]string{"element": "fire"})
	testenv.Consistently(t, time.Second, func() error {
		if c := claims(t, ns); len(c) != 0 {
			return fmt.Errorf("claims: %v", c)
		}
		return nil
	})
}
