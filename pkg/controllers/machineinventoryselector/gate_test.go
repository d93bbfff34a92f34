package machineinventoryselector_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// gatedInventory creates one inventory as the registration server does
// (under approval: Manual, with the annotations it stamps).
func gatedInventory(t *testing.T, ns, name string, labels, annotations map[string]string) {
	t.Helper()
	_, err := inventories.Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name, Labels: labels, Annotations: annotations,
		Finalizers: []string{elementalv1.MachineInventoryFinalizer},
	}})
	require.NoError(t, err)
}

func waitInventory(t *testing.T, ns, name string, check func(*elementalv1.MachineInventory) error) {
	t.Helper()
	eventually(t, time.Minute, func() error {
		mi, err := inventories.Get(ns, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return check(mi)
	})
}

func phase(want string) func(*elementalv1.MachineInventory) error {
	return func(mi *elementalv1.MachineInventory) error {
		if mi.Status.Phase != want {
			return fmt.Errorf("phase %q, want %q", mi.Status.Phase, want)
		}
		return nil
	}
}

func annotateInventory(t *testing.T, ns, name, key string, value *string) {
	t.Helper()
	v := "null"
	if value != nil {
		v = fmt.Sprintf("%q", *value)
	}
	_, err := inventories.Patch(ns, name, types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, key, v)))
	require.NoError(t, err)
}

func ptr(s string) *string { return &s }

// A host registered under approval: Manual is never claimed, however many
// selectors race for it, until an admin approves it; then it is at once.
func TestApprovalGateUnderRacingSelectors(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	gate := elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "gate"}}
	gatedInventory(t, ns, "gated", map[string]string{"element": "gate"}, map[string]string{elementalv1.ApprovalAnnotation: "Manual"})
	waitInventory(t, ns, "gated", func(mi *elementalv1.MachineInventory) error {
		if mi.Status.Plan == nil || mi.Status.Plan.AppliedChecksum == "" {
			return fmt.Errorf("agent has not acked the empty plan")
		}
		if c := meta.FindStatusCondition(mi.Status.Conditions, elementalv1.ConditionApproved); c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("Approved condition %+v", c)
		}
		return phase("PendingApproval")(mi)
	})

	const racing = 200
	var wg sync.WaitGroup
	errs := make(chan error, racing)
	sem := make(chan struct{}, 16)
	for i := 0; i < racing; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := rancher.CreateMachine(ctx, ns, fmt.Sprintf("r%03d", i), testenv.MachineOptions{Selector: gate, Script: script}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Every selector is judged, and says why it waits.
	testenv.EventuallyEvery(t, 2*time.Minute, 500*time.Millisecond, func() error {
		list, err := selectors.List(ns, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, mis := range list.Items {
			if msg := conditionMessage(&mis, elementalv1.ConditionInventoryReady); !strings.Contains(msg, "1 match: 1 pending approval") {
				return fmt.Errorf("%s: %q", mis.Name, msg)
			}
		}
		if len(list.Items) != racing {
			return fmt.Errorf("%d selectors", len(list.Items))
		}
		return nil
	})
	testenv.Consistently(t, 3*time.Second, func() error {
		if n := len(claims(t, ns)); n != 0 {
			return fmt.Errorf("%d claims of an unapproved inventory", n)
		}
		return nil
	})

	approved := time.Now()
	annotateInventory(t, ns, "gated", elementalv1.ApprovedAnnotation, ptr("true"))
	var holder string
	eventually(t, 30*time.Second, func() error {
		for sel := range claims(t, ns) {
			holder = sel
			return nil
		}
		return fmt.Errorf("not claimed yet")
	})
	t.Logf("claimed %s after approval", time.Since(approved))
	waitSelector(t, ns, holder, time.Minute, isReady)
	testenv.Consistently(t, 2*time.Second, func() error {
		if n := len(claims(t, ns)); n != 1 {
			return fmt.Errorf("%d claims", n)
		}
		return nil
	})
	mi, err := inventories.Get(ns, "gated", metav1.GetOptions{})
	require.NoError(t, err)
	assert.True(t, meta.IsStatusConditionTrue(mi.Status.Conditions, elementalv1.ConditionApproved))
}

// A cordoned inventory is not claimed; cordoning a claimed one leaves its
// claim alone; uncordoning returns it to the pool.
func TestCordonBlocksClaims(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	sel := elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "cordon"}}
	readyInventories(t, ns, "c", 2, map[string]string{"element": "cordon"})
	annotateInventory(t, ns, "c-000", elementalv1.CordonedAnnotation, ptr("bad disk"))
	waitInventory(t, ns, "c-000", phase("Cordoned"))

	_, err := rancher.CreateMachine(ctx, ns, "first", testenv.MachineOptions{Selector: sel, Script: script})
	require.NoError(t, err)
	first := waitSelector(t, ns, "first", time.Minute, isReady)
	require.Equal(t, "c-001", first.Status.MachineInventoryRef.Name)

	_, err = rancher.CreateMachine(ctx, ns, "second", testenv.MachineOptions{Selector: sel, Script: script})
	require.NoError(t, err)
	waitSelector(t, ns, "second", time.Minute, func(mis *elementalv1.MachineInventorySelector) error {
		want := "no free inventory: 2 match: 1 claimed, 1 cordoned (bad disk)"
		if msg := conditionMessage(mis, elementalv1.ConditionInventoryReady); msg != want {
			return fmt.Errorf("message %q, want %q", msg, want)
		}
		return nil
	})

	// Cordoning the claimed host changes nothing for its selector.
	annotateInventory(t, ns, "c-001", elementalv1.CordonedAnnotation, ptr("flaky NIC"))
	testenv.Consistently(t, 2*time.Second, func() error {
		pairs := claims(t, ns)
		if len(pairs) != 1 || pairs["first"] != "c-001" {
			return fmt.Errorf("claims %v", pairs)
		}
		return nil
	})
	waitSelector(t, ns, "first", time.Minute, isReady)
	waitInventory(t, ns, "c-001", phase("Provisioned"))

	// Uncordoned, c-000 goes to the waiting selector.
	annotateInventory(t, ns, "c-000", elementalv1.CordonedAnnotation, nil)
	second := waitSelector(t, ns, "second", time.Minute, isReady)
	assert.Equal(t, "c-000", second.Status.MachineInventoryRef.Name)
}
