package machineinventory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rancher/wrangler/v3/pkg/generic"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/elemental-operator/elemental-operator/pkg/admission"
	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

const resetTimeout = 3 * time.Second

var (
	env         *testenv.Env
	writes      *testenv.WriteCounter
	inventories generic.ClientInterface[*elementalv1.MachineInventory, *elementalv1.MachineInventoryList]
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
	factory, err := elementalctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	inventories = factory.Elemental().V1beta1().MachineInventory()
	// Every test here runs under the plan Secret admission policy, as the
	// operator installs it with its CRDs: agents can only write back.
	if err := admission.Install(context.Background(), env.Client); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	// The operator in-process, its writes counted.
	opCfg, counter := testenv.CountWrites(env.Config)
	writes = counter
	stop := testenv.RunOperator(opCfg, func(c *operator.Config) { c.ResetTimeout = resetTimeout })
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "operator:", err)
		return 1
	}
	return code
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns, err := env.NewNamespace(context.Background(), "mi")
	require.NoError(t, err)
	return ns
}

func newInventory(t *testing.T, ns, name string, annotations map[string]string) *elementalv1.MachineInventory {
	t.Helper()
	mi, err := inventories.Create(&elementalv1.MachineInventory{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations, Labels: map[string]string{"element": "fire"}},
		Spec:       elementalv1.MachineInventorySpec{MachineHash: "abc"},
	})
	require.NoError(t, err)
	return mi
}

func getInventory(t *testing.T, ns, name string) *elementalv1.MachineInventory {
	t.Helper()
	mi, err := inventories.Get(ns, name, metav1.GetOptions{})
	require.NoError(t, err)
	return mi
}

// eventually polls until check passes, reporting the last failure.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	testenv.Eventually(t, timeout, check)
}

func condition(mi *elementalv1.MachineInventory, typ string) *metav1.Condition {
	return meta.FindStatusCondition(mi.Status.Conditions, typ)
}

// waitReason waits until condition typ of the inventory has status and reason.
func waitReason(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *elementalv1.MachineInventory {
	t.Helper()
	var mi *elementalv1.MachineInventory
	eventually(t, timeout, func() error {
		var err error
		mi, err = inventories.Get(ns, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		c := condition(mi, typ)
		if c == nil || c.Status != status || c.Reason != reason {
			return fmt.Errorf("%s is %+v", typ, c)
		}
		return nil
	})
	return mi
}

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	eventually(t, 30*time.Second, func() error {
		var err error
		s, err = env.Client.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
		return err
	})
	return s
}

// agentReports simulates an agent write-back (merge patch of data keys).
func agentReports(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	patch := map[string]map[string][]byte{"data": {}}
	for k, v := range data {
		patch["data"][k] = []byte(v)
	}
	body, err := json.Marshal(patch)
	require.NoError(t, err)
	_, err = env.Client.CoreV1().Secrets(ns).Patch(context.Background(), name, types.MergePatchType, body, metav1.PatchOptions{})
	require.NoError(t, err)
}

// writePlan replaces the plan the way another writer (the selector controller) would.
func writePlan(t *testing.T, ns, name string, plan []byte, planType string) {
	t.Helper()
	_, err := env.Client.CoreV1().Secrets(ns).Patch(context.Background(), name, types.MergePatchType, plans.Patch(plan, planType), metav1.PatchOptions{})
	require.NoError(t, err)
}

func waitGone(t *testing.T, timeout time.Duration, get func() error) {
	t.Helper()
	eventually(t, timeout, func() error {
		err := get()
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("still exists")
	})
}
