package machineinventoryselector_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var (
	env         *testenv.Env
	rancher     *testenv.SimulatedRancher
	inventories elementalv1ctl.MachineInventoryClient
	selectors   elementalv1ctl.MachineInventorySelectorClient
	// writes counts the operator's writes.
	writes *testenv.WriteCounter
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	env, err = testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if rancher, err = testenv.NewSimulatedRancher(env.Config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := elementalctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	inventories, selectors = f.Elemental().V1beta1().MachineInventory(), f.Elemental().V1beta1().MachineInventorySelector()

	var opCfg *rest.Config
	opCfg, writes = testenv.CountWrites(env.Config)
	stop := testenv.RunOperator(opCfg, nil)
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "operator:", err)
		return 1
	}
	return code
}

// namespace makes a namespace with simulated agents answering its plans.
func namespace(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ns, err := env.NewNamespace(ctx, "mis")
	require.NoError(t, err)
	testenv.RunSimulatedAgents(ctx, env.Client, ns, 4)
	return ns
}

// readyInventories registers n hosts (as the registration server would) and
// waits until their agents acked the empty plan.
func readyInventories(t *testing.T, ns, prefix string, n int, labels map[string]string) {
	t.Helper()
	for i := 0; i < n; i++ {
		l := map[string]string{}
		for k, v := range labels {
			l[k] = v
		}
		l[elementalv1.InternalIPLabel] = fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)
		_, err := inventories.Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("%s-%03d", prefix, i), Labels: l,
			Finalizers: []string{elementalv1.MachineInventoryFinalizer},
		}})
		require.NoError(t, err)
	}
	eventually(t, 2*time.Minute, func() error {
		list, err := inventories.List(ns, metav1.ListOptions{})
		if err != nil {
			return err
		}
		acked := 0
		for _, mi := range list.Items {
			// Acked the empty plan once (it may be claimed right after).
			if strings.HasPrefix(mi.Name, prefix+"-") && mi.Status.Plan != nil && mi.Status.Plan.AppliedChecksum != "" {
				acked++
			}
		}
		if acked < n {
			return fmt.Errorf("%d/%d inventories acked by their agent", acked, n)
		}
		return nil
	})
}

func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	testenv.Eventually(t, timeout, check)
}

func reason(conds []metav1.Condition, typ string) string {
	if c := meta.FindStatusCondition(conds, typ); c != nil {
		return c.Reason
	}
	return ""
}

func waitSelector(t *testing.T, ns, name string, timeout time.Duration, check func(*elementalv1.MachineInventorySelector) error) *elementalv1.MachineInventorySelector {
	t.Helper()
	var mis *elementalv1.MachineInventorySelector
	eventually(t, timeout, func() error {
		var err error
		if mis, err = selectors.Get(ns, name, metav1.GetOptions{}); err != nil {
			return err
		}
		return check(mis)
	})
	return mis
}

func isReady(mis *elementalv1.MachineInventorySelector) error {
	if !mis.Status.Ready {
		return fmt.Errorf("not ready: %s", reason(mis.Status.Conditions, elementalv1.ConditionReady))
	}
	return nil
}

func hasReason(typ, want string) func(*elementalv1.MachineInventorySelector) error {
	return func(mis *elementalv1.MachineInventorySelector) error {
		if got := reason(mis.Status.Conditions, typ); got != want {
			return fmt.Errorf("%s reason %q, want %q", typ, got, want)
		}
		return nil
	}
}

// claims checks the invariants over a namespace: no inventory claimed twice,
// no selector holding two; it returns selector name → inventory name.
func claims(t *testing.T, ns string) map[string]string {
	t.Helper()
	list, err := inventories.List(ns, metav1.ListOptions{})
	require.NoError(t, err)
	out := map[string]string{}
	for _, mi := range list.Items {
		n := 0
		for _, ref := range mi.OwnerReferences {
			if ref.Kind == "MachineInventorySelector" {
				n++
				if prev, dup := out[ref.Name]; dup {
					t.Fatalf("selector %s holds %s and %s", ref.Name, prev, mi.Name)
				}
				out[ref.Name] = mi.Name
			}
		}
		if n > 1 {
			t.Fatalf("inventory %s claimed %d times", mi.Name, n)
		}
	}
	return out
}
