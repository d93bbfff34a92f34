package machineinventoryselectortemplate_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if env, err = testenv.Start(testenv.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	stop := testenv.RunOperator(env.Config, nil)
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "operator:", err)
		return 1
	}
	return code
}

func TestTemplateShowsPoolCapacity(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns, err := env.NewNamespace(ctx, "mist")
	require.NoError(t, err)
	testenv.RunSimulatedAgents(ctx, env.Client, ns, 4)
	f, err := elementalctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	templates, inventories := f.Elemental().V1beta1().MachineInventorySelectorTemplate(), f.Elemental().V1beta1().MachineInventory()

	_, err = templates.Create(&elementalv1.MachineInventorySelectorTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fire"},
		Spec: elementalv1.MachineInventorySelectorTemplateSpec{Template: elementalv1.MachineInventorySelectorTemplateResource{
			Spec: elementalv1.MachineInventorySelectorSpec{Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}}},
		}},
	})
	require.NoError(t, err)
	_, err = templates.Create(&elementalv1.MachineInventorySelectorTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"},
		Spec: elementalv1.MachineInventorySelectorTemplateSpec{Template: elementalv1.MachineInventorySelectorTemplateResource{
			Spec: elementalv1.MachineInventorySelectorSpec{Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}},
		}},
	})
	require.NoError(t, err)

	for i, element := range []string{"fire", "fire", "fire", "water"} {
		_, err := inventories.Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("h%d", i), Labels: map[string]string{"element": element},
		}})
		require.NoError(t, err)
	}
	wait := func(name string, check func(*elementalv1.MachineInventorySelectorTemplate) error) {
		deadline := time.Now().Add(30 * time.Second)
		var err error
		for time.Now().Before(deadline) {
			var mist *elementalv1.MachineInventorySelectorTemplate
			if mist, err = templates.Get(ns, name, metav1.GetOptions{}); err == nil {
				if err = check(mist); err == nil {
					return
				}
			}
			time.Sleep(100 * time.Millisecond) // the poll interval of this Eventually-style wait
		}
		t.Fatalf("%s: %v", name, err)
	}
	counts := func(matching, available int) func(*elementalv1.MachineInventorySelectorTemplate) error {
		return func(m *elementalv1.MachineInventorySelectorTemplate) error {
			if m.Status.MatchingInventories != matching || m.Status.AvailableInventories != available {
				return fmt.Errorf("matching %d available %d", m.Status.MatchingInventories, m.Status.AvailableInventories)
			}
			return nil
		}
	}
	// Three match; once their agents acked the empty plan, three are free.
	wait("fire", counts(3, 3))

	// An inventory going away, and another one relabelled into the pool, are
	// both reflected.
	require.NoError(t, inventories.Delete(ns, "h0", nil))
	wait("fire", counts(2, 2))
	mi, err := inventories.Get(ns, "h3", metav1.GetOptions{})
	require.NoError(t, err)
	mi.Labels["element"] = "fire"
	_, err = inventories.Update(mi)
	require.NoError(t, err)
	wait("fire", counts(3, 3))
	wait("broken", func(m *elementalv1.MachineInventorySelectorTemplate) error {
		for _, c := range m.Status.Conditions {
			if c.Type == elementalv1.ConditionReady && c.Reason == elementalv1.ReasonInvalidSelector {
				return nil
			}
		}
		return fmt.Errorf("no InvalidSelector condition: %v", m.Status.Conditions)
	})
}
