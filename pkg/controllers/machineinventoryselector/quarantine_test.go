package machineinventoryselector_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// The install script of this test fails on a host without a healthy-disk
// command, the way a host with a broken disk would fail rke2's installer.
const quarantineScript = `#!/bin/sh
if ! command -v healthy-disk >/dev/null 2>&1; then
  echo "installing rke2"
  echo "no disk for rke2"
  exit 1
fi
echo installed
`

// hostnamectl without systemd: the agent runs in its own UTS namespace.
const hostnamectlStub = "#!/bin/sh\n[ \"$1\" = set-hostname ] || exit 1\nshift\n[ \"$1\" = --transient ] && shift\nexec hostname \"$1\"\n"

// TestQuarantineMovesANotReadySelector runs two real rancher-system-agents:
// the first host claimed fails its bootstrap until the operator (default
// --quarantine-after 3) cordons it, gives it the cleanup plan and moves the
// selector to the healthy host, whose bootstrap succeeds. A watcher checks
// that the selector never holds two inventories.
func TestQuarantineMovesANotReadySelector(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns, err := env.NewNamespace(ctx, "quarantine") // real agents only: no simulated ones
	require.NoError(t, err)
	sel := elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "earth"}}
	quarantinedBefore := testutil.ToFloat64(metrics.InventoriesQuarantined)

	startHost := func(name string, stubs map[string]string) {
		mi, err := inventories.Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, Labels: map[string]string{"element": "earth"},
			Finalizers: []string{elementalv1.MachineInventoryFinalizer},
		}})
		require.NoError(t, err)
		require.NoError(t, credentials.Ensure(ctx, env.Client, mi)) // the registration server's part
		token, _, err := credentials.Token(ctx, env.Client, mi, time.Hour)
		require.NoError(t, err)
		opts := testenv.AgentOptionsFor(env.Config, token, ns, name)
		opts.Stubs = stubs
		a, err := testenv.StartAgent(opts)
		require.NoError(t, err)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("agent of %s:\n%s", name, testenv.Tail(a.Output(), 3000))
			}
			a.Stop()
		})
		eventually(t, 2*time.Minute, func() error {
			mi, err := inventories.Get(ns, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if mi.Status.Phase != "Available" && mi.Status.Phase != "Claimed" {
				return fmt.Errorf("%s: phase %q", name, mi.Status.Phase)
			}
			return nil
		})
	}

	// The watcher: every inventory event, the claims of the whole namespace.
	w, err := inventories.Watch(ns, metav1.ListOptions{})
	require.NoError(t, err)
	defer w.Stop()
	var (
		mu       sync.Mutex
		holders  []string // the selector's successive inventories
		violated []string
	)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		claimedBy := map[string]string{} // inventory → selector
		for ev := range w.ResultChan() {
			mi, ok := ev.Object.(*elementalv1.MachineInventory)
			if !ok {
				continue
			}
			delete(claimedBy, mi.Name)
			if ev.Type != watch.Deleted {
				n := 0
				for _, ref := range mi.OwnerReferences {
					if ref.Kind == "MachineInventorySelector" {
						n++
						claimedBy[mi.Name] = ref.Name
					}
				}
				if n > 1 {
					mu.Lock()
					violated = append(violated, fmt.Sprintf("%s claimed %d times", mi.Name, n))
					mu.Unlock()
				}
			}
			perSelector := map[string][]string{}
			for inv, s := range claimedBy {
				perSelector[s] = append(perSelector[s], inv)
			}
			mu.Lock()
			for s, invs := range perSelector {
				if len(invs) > 1 {
					violated = append(violated, fmt.Sprintf("selector %s holds %v", s, invs))
				}
			}
			if c := claimedBy[mi.Name]; c != "" && (len(holders) == 0 || holders[len(holders)-1] != mi.Name) {
				holders = append(holders, mi.Name)
			}
			mu.Unlock()
		}
	}()

	// Only the broken host is free when the Machine comes.
	startHost("host-broken", map[string]string{"hostnamectl": hostnamectlStub})
	_, err = rancher.CreateMachine(ctx, ns, "m1", testenv.MachineOptions{Selector: sel, Script: quarantineScript, Cluster: "earth"})
	require.NoError(t, err)
	waitSelector(t, ns, "m1", 2*time.Minute, func(m *elementalv1.MachineInventorySelector) error {
		if reason(m.Status.Conditions, elementalv1.ConditionReady) != elementalv1.ReasonBootstrapPlanFailed {
			return fmt.Errorf("ready reason %q", reason(m.Status.Conditions, elementalv1.ConditionReady))
		}
		return nil
	})
	startHost("host-healthy", map[string]string{"hostnamectl": hostnamectlStub, "healthy-disk": "#!/bin/sh\nexit 0\n"})

	// The agent retries every 30 s; the third failure quarantines the host.
	mi := waitInventoryFor(t, ns, "host-broken", 4*time.Minute, func(mi *elementalv1.MachineInventory) error {
		if mi.Annotations[elementalv1.CordonedAnnotation] == "" {
			return fmt.Errorf("not cordoned (plan %+v)", mi.Status.Plan)
		}
		return nil
	})
	assert.Equal(t, "quarantined: bootstrap failed 3 times: no disk for rke2", mi.Annotations[elementalv1.CordonedAnnotation])
	waitEvent(t, ns, "host-broken", elementalv1.ReasonInventoryQuarantined)
	assert.Equal(t, quarantinedBefore+1, testutil.ToFloat64(metrics.InventoriesQuarantined))

	// The not-ready selector moved to the healthy host, whose bootstrap succeeds.
	mis := waitSelector(t, ns, "m1", 2*time.Minute, isReady)
	assert.Equal(t, "host-healthy", mis.Status.MachineInventoryRef.Name)
	waitEvent(t, ns, "m1", elementalv1.ReasonInventoryQuarantined)

	// The broken host applied the cleanup plan, stays cordoned and unclaimed,
	// and the selector says the released host is clean.
	waitInventoryFor(t, ns, "host-broken", 2*time.Minute, func(mi *elementalv1.MachineInventory) error {
		if len(mi.OwnerReferences) != 0 || mi.Annotations[elementalv1.ReleaseAnnotation] != "" {
			return fmt.Errorf("owners %v, annotations %v", mi.OwnerReferences, mi.Annotations)
		}
		if mi.Status.Plan == nil || mi.Status.Plan.Type != elementalv1.PlanTypeEmpty {
			return fmt.Errorf("plan %+v", mi.Status.Plan)
		}
		if !strings.HasPrefix(mi.Annotations[elementalv1.CordonedAnnotation], "quarantined:") {
			return fmt.Errorf("cordon lost: %v", mi.Annotations)
		}
		return nil
	})
	mis = waitSelector(t, ns, "m1", time.Minute, func(m *elementalv1.MachineInventorySelector) error {
		c := meta.FindStatusCondition(m.Status.Conditions, elementalv1.ConditionReleasedHostCleaned)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("released host condition %+v", c)
		}
		return nil
	})
	assert.True(t, mis.Status.Ready)
	assert.Equal(t, "host-healthy", mis.Status.MachineInventoryRef.Name, "a ready selector is never moved")

	w.Stop()
	<-watched
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, violated, "never two claims at once")
	assert.Equal(t, []string{"host-broken", "host-healthy"}, holders)
}

func waitInventoryFor(t *testing.T, ns, name string, timeout time.Duration, check func(*elementalv1.MachineInventory) error) *elementalv1.MachineInventory {
	t.Helper()
	var mi *elementalv1.MachineInventory
	eventually(t, timeout, func() error {
		var err error
		if mi, err = inventories.Get(ns, name, metav1.GetOptions{}); err != nil {
			return err
		}
		return check(mi)
	})
	return mi
}
