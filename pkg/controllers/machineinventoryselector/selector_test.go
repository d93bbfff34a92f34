package machineinventoryselector_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	rplan "github.com/rancher/rancher/pkg/plan"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var fire = elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}}

const script = "#!/bin/sh\necho installing rancher-system-agent\n"

func TestAdoptionBootstrapAndReady(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	readyInventories(t, ns, "fire", 3, map[string]string{"element": "fire", "cpus": "4", "node-role.kubernetes.io/worker": "true"})
	readyInventories(t, ns, "water", 2, map[string]string{"element": "water"})

	for i := 0; i < 3; i++ {
		_, err := rancher.CreateMachine(ctx, ns, fmt.Sprintf("m%d", i), testenv.MachineOptions{Selector: fire, Script: script})
		require.NoError(t, err)
	}
	used := map[string]bool{}
	for i := 0; i < 3; i++ {
		mis := waitSelector(t, ns, fmt.Sprintf("m%d", i), time.Minute, isReady)
		require.NotNil(t, mis.Status.MachineInventoryRef)
		inv := mis.Status.MachineInventoryRef.Name
		assert.True(t, strings.HasPrefix(inv, "fire-"), "claimed %s", inv)
		assert.False(t, used[inv], "%s claimed twice", inv)
		used[inv] = true
		assert.True(t, mis.Status.Initialization.Provisioned)
		assert.Contains(t, mis.Finalizers, elementalv1.MachineInventorySelectorFinalizer)
		assert.Equal(t, elementalv1.ReasonSelectorReady, reason(mis.Status.Conditions, elementalv1.ConditionReady))
		assert.Equal(t, elementalv1.ReasonBootstrapPlanApplied, reason(mis.Status.Conditions, elementalv1.ConditionBootstrapReady))
		require.Len(t, mis.Status.Addresses, 1)
		assert.Equal(t, elementalv1.MachineInternalIP, mis.Status.Addresses[0].Type)

		// The plan in the inventory's Secret is the bootstrap plan, byte for byte.
		secret, err := env.Client.CoreV1().Secrets(ns).Get(ctx, inv, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, elementalv1.PlanTypeBootstrap, secret.Annotations[elementalv1.PlanTypeAnnotation])
		assert.Equal(t, mis.Status.BootstrapPlanChecksum, plans.Checksum(secret.Data["plan"]))
		p, err := rplan.Parse(secret.Data["plan"])
		require.NoError(t, err)
		content, _ := base64.StdEncoding.DecodeString(p.Files[0].Content)
		assert.Equal(t, script, string(content))
		labels, _ := base64.StdEncoding.DecodeString(p.Files[2].Content)
		assert.NotContains(t, string(labels), "node-role.kubernetes.io", "kubelet-refused labels are dropped")
		assert.Contains(t, string(labels), "element=fire")

		mi, err := inventories.Get(ns, inv, metav1.GetOptions{})
		require.NoError(t, err)
		eventually(t, 30*time.Second, func() error {
			mi, err = inventories.Get(ns, inv, metav1.GetOptions{})
			if err != nil || mi.Status.Phase != "Provisioned" {
				return fmt.Errorf("phase %q", mi.Status.Phase)
			}
			return nil
		})
	}
	claims(t, ns)

	t.Run("Rancher's providerID and addresses are never overwritten", func(t *testing.T) {
		// As machinenodelookup does: full-object writes, retried on conflict.
		require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			mis, err := selectors.Get(ns, "m0", metav1.GetOptions{})
			if err != nil {
				return err
			}
			mis.Status.Addresses = []elementalv1.MachineAddress{{Type: elementalv1.MachineHostName, Address: "node-from-rancher"}}
			if mis, err = selectors.UpdateStatus(mis); err != nil {
				return err
			}
			mis.Spec.ProviderID = "rke2://" + mis.Status.MachineInventoryRef.Name
			_, err = selectors.Update(mis)
			return err
		}))
		// Nudge the controller, then check nothing of Rancher's was touched.
		selectorsTouch(t, ns, "m0")
		var mis *elementalv1.MachineInventorySelector
		testenv.Consistently(t, time.Second, func() error {
			var err error
			if mis, err = selectors.Get(ns, "m0", metav1.GetOptions{}); err != nil {
				return err
			}
			if len(mis.Status.Addresses) != 1 || mis.Status.Addresses[0].Address != "node-from-rancher" || mis.Spec.ProviderID != "rke2://"+mis.Status.MachineInventoryRef.Name {
				return fmt.Errorf("Rancher's fields were touched: addresses %v, providerID %q", mis.Status.Addresses, mis.Spec.ProviderID)
			}
			return nil
		})
		assert.Equal(t, []elementalv1.MachineAddress{{Type: elementalv1.MachineHostName, Address: "node-from-rancher"}}, mis.Status.Addresses)
		assert.Equal(t, "rke2://"+mis.Status.MachineInventoryRef.Name, mis.Spec.ProviderID)
		assert.True(t, mis.Status.Ready)
	})
}

// An adoption costs the operator five object writes, however long its steps
// wait in queues: the selector's finalizer, the claim, the bootstrap plan,
// the selector's status (claim, plan and ready at once) and the inventory's
// status (claimed and provisioned at once). Events are not counted.
func TestAdoptionWrites(t *testing.T) {
	ns := namespace(t)
	readyInventories(t, ns, "fire", 5, map[string]string{"element": "fire"})
	time.Sleep(time.Second) // pacing, not an assertion: registration writes land before the count starts
	before := writes.InNamespace(ns)
	adoptFire(t, ns, 5)
	eventually(t, 30*time.Second, func() error {
		list, err := inventories.List(ns, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, mi := range list.Items {
			if mi.Status.Phase != "Provisioned" {
				return fmt.Errorf("%s: phase %q", mi.Name, mi.Status.Phase)
			}
		}
		return nil
	})
	time.Sleep(time.Second) // kept: a window for stray writes; the exact count asserted next is the check
	after := writes.InNamespace(ns)
	delta := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 && !strings.Contains(k, "events") {
			delta[k] = d
		}
	}
	assert.Equal(t, map[string]int{
		"PUT machineinventoryselectors":        5,
		"PUT machineinventoryselectors/status": 5,
		"PUT machineinventories":               5,
		"PUT machineinventories/status":        5,
		"PATCH secrets":                        5,
	}, delta)

	// One Normal Event tells of claim and plan together.
	events := waitEvent(t, ns, "m0", "BootstrapPlanWritten")
	assert.Contains(t, events[0].Message, "claimed inventory ")
	for _, e := range events {
		assert.NotEqual(t, "InventoryClaimed", e.Reason)
	}
}

// Once every adoption is done nothing changes, so (timers of earlier tests
// aside) no handler runs. The selector and inventory controllers each wake the
// other's object; when they did so on every run, not only on a change, the
// pair kept each other running forever: tens of thousands of runs a second.
func TestQuietOnceAdopted(t *testing.T) {
	ns := namespace(t)
	readyInventories(t, ns, "quiet", 3, map[string]string{"element": "fire"})
	adoptFire(t, ns, 3)
	time.Sleep(2 * time.Second) // pacing: the adoptions' last events settle first
	metrics.Register("test")
	before := handlerRuns(t)
	time.Sleep(2 * time.Second)
	runs := handlerRuns(t) - before
	assert.Less(t, runs, 100.0, "handler runs in 2 s with nothing to do")
}

// handlerRuns sums lasso's handler execution counter over every handler.
func handlerRuns(t *testing.T) float64 {
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	n := 0.0
	for _, f := range families {
		if f.GetName() == "lasso_controller_total_handler_execution" {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// adoptFire creates Machines m0…m<n-1> whose selectors match element=fire
// and waits until every one is ready.
func adoptFire(t *testing.T, ns string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		_, err := rancher.CreateMachine(context.Background(), ns, fmt.Sprintf("m%d", i), testenv.MachineOptions{Selector: fire, Script: script})
		require.NoError(t, err)
	}
	for i := 0; i < n; i++ {
		waitSelector(t, ns, fmt.Sprintf("m%d", i), time.Minute, isReady)
	}
}

// selectorsTouch adds an annotation so the controller reconciles.
func selectorsTouch(t *testing.T, ns, name string) {
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mis, err := selectors.Get(ns, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if mis.Annotations == nil {
			mis.Annotations = map[string]string{}
		}
		mis.Annotations["test/touched"] = time.Now().String()
		_, err = selectors.Update(mis)
		return err
	}))
}

func TestMoreSelectorsThanInventories(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	readyInventories(t, ns, "fire", 15, map[string]string{"element": "fire"})
	for i := 0; i < 20; i++ {
		_, err := rancher.CreateMachine(ctx, ns, fmt.Sprintf("m%02d", i), testenv.MachineOptions{Selector: fire, Script: script})
		require.NoError(t, err)
	}
	eventually(t, 2*time.Minute, func() error {
		if n := len(claims(t, ns)); n != 15 {
			return fmt.Errorf("%d claims", n)
		}
		return nil
	})
	testenv.Consistently(t, 2*time.Second, func() error { // give any wrong extra claim the chance to happen
		if n := len(claims(t, ns)); n != 15 {
			return fmt.Errorf("%d claims", n)
		}
		return nil
	})
	pairs := claims(t, ns)
	assert.Len(t, pairs, 15)
	waiting := 0
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("m%02d", i)
		if _, ok := pairs[name]; ok {
			waitSelector(t, ns, name, time.Minute, isReady)
			continue
		}
		waiting++
		mis := waitSelector(t, ns, name, 30*time.Second, hasReason(elementalv1.ConditionInventoryReady, elementalv1.ReasonWaitingForInventory))
		assert.Contains(t, conditionMessage(mis, elementalv1.ConditionInventoryReady), "no free inventory")
	}
	assert.Equal(t, 5, waiting)

	// A new host joins the pool: a waiting selector gets it without polling.
	readyInventories(t, ns, "late", 1, map[string]string{"element": "fire"})
	eventually(t, time.Minute, func() error {
		if n := len(claims(t, ns)); n != 16 {
			return fmt.Errorf("%d claims", n)
		}
		return nil
	})
}

func conditionMessage(mis *elementalv1.MachineInventorySelector, typ string) string {
	for _, c := range mis.Status.Conditions {
		if c.Type == typ {
			return c.Message
		}
	}
	return ""
}

func TestMachineOwnerRefInEitherVersion(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	readyInventories(t, ns, "fire", 2, map[string]string{"element": "fire"})
	for _, v := range []string{"v1beta1", "v1beta2"} {
		_, err := rancher.CreateMachine(ctx, ns, "m-"+v, testenv.MachineOptions{Selector: fire, Script: script, OwnerAPIVersion: "cluster.x-k8s.io/" + v})
		require.NoError(t, err)
	}
	waitSelector(t, ns, "m-v1beta1", time.Minute, isReady)
	waitSelector(t, ns, "m-v1beta2", time.Minute, isReady)
}

func TestBootstrapDataAppearingLate(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	readyInventories(t, ns, "fire", 1, map[string]string{"element": "fire"})
	_, err := rancher.CreateMachine(ctx, ns, "late", testenv.MachineOptions{Selector: fire})
	require.NoError(t, err)
	mis := waitSelector(t, ns, "late", time.Minute, hasReason(elementalv1.ConditionReady, elementalv1.ReasonWaitingForBootstrapData))
	assert.NotNil(t, mis.Status.MachineInventoryRef, "claimed while waiting for data")
	assert.Contains(t, conditionMessage(mis, elementalv1.ConditionBootstrapReady), "no bootstrap data secret yet")

	waitEvent(t, ns, "late", "InventoryClaimed")

	require.NoError(t, rancher.CreateBootstrapSecret(ctx, ns, "late", script))
	start := time.Now()
	require.NoError(t, rancher.SetBootstrapData(ns, "late"))
	waitSelector(t, ns, "late", time.Minute, isReady)
	// The Machine watch makes progress at once, not after the 30s retry.
	assert.Less(t, time.Since(start), 20*time.Second)
	for _, e := range waitEvent(t, ns, "late", "BootstrapPlanWritten") {
		if e.Reason == "BootstrapPlanWritten" {
			assert.Equal(t, "bootstrap plan written to "+mis.Status.MachineInventoryRef.Name, e.Message)
		}
	}
}

func TestFailingBootstrapPlan(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	readyInventories(t, ns, "fire", 1, map[string]string{"element": "fire"})
	_, err := rancher.CreateMachine(ctx, ns, "bad", testenv.MachineOptions{Selector: fire, Script: "#!/bin/sh\n# " + testenv.FailMarker + "\nexit 1\n"})
	require.NoError(t, err)
	mis := waitSelector(t, ns, "bad", time.Minute, hasReason(elementalv1.ConditionBootstrapReady, elementalv1.ReasonBootstrapPlanFailed))
	assert.False(t, mis.Status.Ready)
	assert.Equal(t, elementalv1.ReasonBootstrapPlanFailed, reason(mis.Status.Conditions, elementalv1.ConditionReady))
	waitEvent(t, ns, "bad", "BootstrapPlanFailed")
}

func TestNoClaimWithoutAMachine(t *testing.T) {
	ns := namespace(t)
	readyInventories(t, ns, "fire", 1, map[string]string{"element": "fire"})
	_, err := selectors.Create(&elementalv1.MachineInventorySelector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orphan"},
		Spec:       elementalv1.MachineInventorySelectorSpec{Selector: fire},
	})
	require.NoError(t, err)
	mis := waitSelector(t, ns, "orphan", 30*time.Second, hasReason(elementalv1.ConditionBootstrapReady, elementalv1.ReasonWaitingForBootstrapData))
	assert.Nil(t, mis.Status.MachineInventoryRef)
	testenv.Consistently(t, time.Second, func() error {
		if c := claims(t, ns); len(c) != 0 {
			return fmt.Errorf("claims: %v", c)
		}
		return nil
	})
}

func TestInvalidSelector(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	_, err := rancher.CreateMachine(ctx, ns, "bad-key", testenv.MachineOptions{Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"not a key!": "x"}}, Script: script})
	require.NoError(t, err)
	mis := waitSelector(t, ns, "bad-key", 30*time.Second, hasReason(elementalv1.ConditionReady, elementalv1.ReasonInvalidSelector))
	assert.Nil(t, mis.Status.MachineInventoryRef)
}

func TestPausedSelectorIsLeftAlone(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	readyInventories(t, ns, "fire", 1, map[string]string{"element": "fire"})
	mis, err := rancher.CreateMachine(ctx, ns, "paused", testenv.MachineOptions{Selector: fire, Script: script})
	require.NoError(t, err)
	_ = mis
	// Pause before the controller acts is racy; pause right away and accept
	// either outcome up to the pause, but nothing may change after it.
	eventually(t, 10*time.Second, func() error {
		mis, err := selectors.Get(ns, "paused", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if mis.Annotations == nil {
			mis.Annotations = map[string]string{}
		}
		mis.Annotations["cluster.x-k8s.io/paused"] = ""
		_, err = selectors.Update(mis)
		return err
	})
	mis = waitSelector(t, ns, "paused", 30*time.Second, hasReason(elementalv1.ConditionPaused, elementalv1.ReasonPaused))
	frozen := mis.Status.DeepCopy()
	testenv.Consistently(t, 2*time.Second, func() error {
		if mis, err = selectors.Get(ns, "paused", metav1.GetOptions{}); err != nil {
			return err
		}
		if !reflect.DeepEqual(mis.Status.MachineInventoryRef, frozen.MachineInventoryRef) || mis.Status.BootstrapPlanChecksum != frozen.BootstrapPlanChecksum {
			return fmt.Errorf("a paused selector changed: ref %v, checksum %q", mis.Status.MachineInventoryRef, mis.Status.BootstrapPlanChecksum)
		}
		return nil
	})
	assert.Equal(t, frozen.MachineInventoryRef, mis.Status.MachineInventoryRef)
	assert.Equal(t, frozen.BootstrapPlanChecksum, mis.Status.BootstrapPlanChecksum)

	delete(mis.Annotations, "cluster.x-k8s.io/paused")
	_, err = selectors.Update(mis)
	require.NoError(t, err)
	waitSelector(t, ns, "paused", time.Minute, isReady)
}

// waitEvent waits for a reason on an object and returns that object's
// Events, the one waited for first.
func waitEvent(t *testing.T, ns, name, reason string) []corev1.Event {
	t.Helper()
	var out []corev1.Event
	eventually(t, 30*time.Second, func() error {
		events, err := env.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		out = nil
		for _, e := range events.Items {
			if e.InvolvedObject.Name != name {
				continue
			}
			if e.Reason == reason {
				out = append([]corev1.Event{e}, out...)
			} else {
				out = append(out, e)
			}
		}
		if len(out) == 0 || out[0].Reason != reason {
			return fmt.Errorf("no %s event on %s", reason, name)
		}
		return nil
	})
	return out
}
