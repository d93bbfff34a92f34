package machineinventoryselectortemplate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

type counts struct{ matching, available, claimed, cordoned, pending, notReady, deleting int }

func countsOf(st elementalv1.MachineInventorySelectorTemplateStatus) counts {
	return counts{st.MatchingInventories, st.AvailableInventories, st.ClaimedInventories, st.CordonedInventories,
		st.PendingApprovalInventories, st.NotReadyInventories, st.DeletingInventories}
}

// templateGauge reads elemental_operator_template_inventories for one
// template from the in-process operator's registry: class → value.
func templateGauge(t *testing.T, ns, name string) map[string]float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "elemental_operator_template_inventories" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := labelsOf(m)
			if l["namespace"] == ns && l["template"] == name {
				out[l["class"]] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// The why-not counts add up to matchingInventories and follow inventories
// as they are claimed, cordoned, approved and deleted; capacity follows the
// available ones, and the autoscaler reads it into the right node.
func TestWhyNotCountsAndCapacity(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns, err := env.NewNamespace(ctx, "whynot")
	require.NoError(t, err)
	testenv.RunSimulatedAgents(ctx, env.Client, ns, 4)
	f, err := elementalctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	el := f.Elemental().V1beta1()
	templates, inventories, selectors := el.MachineInventorySelectorTemplate(), el.MachineInventory(), el.MachineInventorySelector()
	dyn, err := dynamic.NewForConfig(env.Config)
	require.NoError(t, err)
	gvr := schema.GroupVersionResource{Group: "elemental.cattle.io", Version: "v1beta1", Resource: "machineinventoryselectortemplates"}

	_, err = templates.Create(&elementalv1.MachineInventorySelectorTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool"},
		Spec: elementalv1.MachineInventorySelectorTemplateSpec{Template: elementalv1.MachineInventorySelectorTemplateResource{
			Spec: elementalv1.MachineInventorySelectorSpec{Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"pool": "p"}}},
		}},
	})
	require.NoError(t, err)
	// A selector without a Machine: nothing adopts for it, but it holds the
	// claim we give it below.
	holder, err := selectors.Create(&elementalv1.MachineInventorySelector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "holder"}})
	require.NoError(t, err)
	ctrl := true

	facts := func(threads, gib string) map[string]string {
		return map[string]string{"pool": "p", elementalv1.CPUTotalThreadsLabel: threads, elementalv1.TotalMemoryLabel: gib, elementalv1.CPUVendorLabel: "GenuineIntel"}
	}
	create := func(name string, labels, annotations map[string]string, edit func(*elementalv1.MachineInventory)) {
		mi := &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations,
			Finalizers: []string{elementalv1.MachineInventoryFinalizer}}}
		if edit != nil {
			edit(mi)
		}
		_, err := inventories.Create(mi)
		require.NoError(t, err)
	}
	const gi8, gi16, gi32 = "8589934592", "17179869184", "34359738368"
	create("a1", facts("8", gi16), nil, nil)
	create("a2", facts("16", gi32), nil, nil)
	create("c1", facts("2", gi8), nil, func(mi *elementalv1.MachineInventory) {
		mi.OwnerReferences = []metav1.OwnerReference{{APIVersion: "elemental.cattle.io/v1beta1", Kind: "MachineInventorySelector", Name: holder.Name, UID: holder.UID, Controller: &ctrl}}
	})
	create("k1", facts("2", gi8), map[string]string{elementalv1.CordonedAnnotation: "bad disk"}, nil)
	create("p1", facts("4", gi8), map[string]string{elementalv1.ApprovalAnnotation: "Manual"}, nil)
	create("d1", facts("2", gi8), nil, func(mi *elementalv1.MachineInventory) {
		mi.Finalizers = append(mi.Finalizers, "test.elemental.cattle.io/hold")
	})
	create("other", map[string]string{"pool": "q"}, nil, nil)
	require.NoError(t, inventories.Delete(ns, "d1", nil))

	wait := func(want counts, cpu, mem string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() error {
			tpl, err := templates.Get(ns, "pool", metav1.GetOptions{})
			if err != nil {
				return err
			}
			st := tpl.Status
			if got := countsOf(st); got != want {
				return fmt.Errorf("counts %+v, want %+v", got, want)
			}
			if sum := st.AvailableInventories + st.ClaimedInventories + st.CordonedInventories + st.PendingApprovalInventories + st.NotReadyInventories + st.DeletingInventories; sum != st.MatchingInventories {
				return fmt.Errorf("classes add up to %d, matching %d", sum, st.MatchingInventories)
			}
			gotCPU, gotMem := st.Capacity[corev1.ResourceCPU], st.Capacity[corev1.ResourceMemory]
			if gotCPU.String() != cpu || gotMem.String() != mem {
				return fmt.Errorf("capacity cpu %s memory %s, want %s %s", gotCPU.String(), gotMem.String(), cpu, mem)
			}
			// The metric mirrors the status.
			g := templateGauge(t, ns, "pool")
			if g["available"] != float64(want.available) || g["claimed"] != float64(want.claimed) || g["cordoned"] != float64(want.cordoned) ||
				g["pendingApproval"] != float64(want.pending) || g["deleting"] != float64(want.deleting) || g["notReady"] != float64(want.notReady) {
				return fmt.Errorf("gauge %v, want %+v", g, want)
			}
			return nil
		})
	}
	wait(counts{matching: 6, available: 2, claimed: 1, cordoned: 1, pending: 1, deleting: 1}, "8", "16Gi")

	// The autoscaler reads the template as any InfraMachineTemplate.
	u, err := dyn.Resource(gvr).Namespace(ns).Get(ctx, "pool", metav1.GetOptions{})
	require.NoError(t, err)
	node, err := autoscalerNode(u)
	require.NoError(t, err)
	require.True(t, resource.MustParse("8").Equal(node.Status.Capacity[corev1.ResourceCPU]))
	require.True(t, resource.MustParse("16Gi").Equal(node.Status.Allocatable[corev1.ResourceMemory]))
	require.Equal(t, "amd64", node.Labels[corev1.LabelArchStable])
	require.Equal(t, "linux", node.Labels[corev1.LabelOSStable])

	// Approving p1 makes it available: capacity drops to its smaller shape.
	patch := func(name, p string) {
		_, err := inventories.Patch(ns, name, types.MergePatchType, []byte(p))
		require.NoError(t, err)
	}
	patch("p1", `{"metadata":{"annotations":{"elemental.cattle.io/approved":"true"}}}`)
	wait(counts{matching: 6, available: 3, claimed: 1, cordoned: 1, deleting: 1}, "4", "8Gi")
	// Uncordoning k1 adds it; the claim is released; d1 finally goes.
	patch("k1", `{"metadata":{"annotations":{"elemental.cattle.io/cordoned":null}}}`)
	wait(counts{matching: 6, available: 4, claimed: 1, deleting: 1}, "2", "8Gi")
	// (Our finalizer is gone by now: the inventory controller cleaned up.)
	patch("d1", `{"metadata":{"finalizers":null}}`)
	wait(counts{matching: 5, available: 4, claimed: 1}, "2", "8Gi")
	// Cordoning every available host leaves nothing to scale from zero with.
	for _, n := range []string{"a1", "a2", "k1", "p1"} {
		patch(n, `{"metadata":{"annotations":{"elemental.cattle.io/cordoned":"maintenance"}}}`)
	}
	wait(counts{matching: 5, claimed: 1, cordoned: 4}, "0", "0")
	u, err = dyn.Resource(gvr).Namespace(ns).Get(ctx, "pool", metav1.GetOptions{})
	require.NoError(t, err)
	_, err = autoscalerNode(u)
	require.Error(t, err, "an empty pool must not be scaled from zero")

	// A deleted template's series go with it.
	require.NoError(t, templates.Delete(ns, "pool", nil))
	testenv.Eventually(t, 30*time.Second, func() error {
		if g := templateGauge(t, ns, "pool"); len(g) > 0 {
			return fmt.Errorf("series of a deleted template: %v", g)
		}
		return nil
	})
}
