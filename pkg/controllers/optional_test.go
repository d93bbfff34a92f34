package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// The operator starts on a cluster with neither Cluster API nor Rancher.
// Installing Rancher's Setting CRD later makes registration URLs follow
// server-url, and installing the Cluster API CRDs later starts provisioning
// (a selector is adopted): no restart.
func TestKindsInstalledAfterStart(t *testing.T) {
	env, err := testenv.Start(testenv.Options{NoRancherCRDs: true, NoCAPICRDs: true})
	require.NoError(t, err)
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opNS, err := env.NewNamespace(ctx, "operator")
	require.NoError(t, err)
	ns, err := env.NewNamespace(ctx, "late")
	require.NoError(t, err)
	testenv.RunSimulatedAgents(ctx, env.Client, ns, 2)
	stop := testenv.RunOperator(env.Config, func(c *operator.Config) {
		c.Namespace = opNS
		c.RegistrationMode = "rancher" // hosts are given Rancher's server-url
	})
	defer func() { require.NoError(t, stop()) }()

	ef, err := elementalctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	el := ef.Elemental().V1beta1()
	eventually := func(timeout time.Duration, check func() error) {
		t.Helper()
		testenv.Eventually(t, timeout, check)
	}

	// No Setting kind: the registration says so.
	_, err = el.MachineRegistration().Create(&elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hosts"}})
	require.NoError(t, err)
	eventually(time.Minute, func() error {
		mr, err := el.MachineRegistration().Get(ns, "hosts", metav1.GetOptions{})
		if err != nil {
			return err
		}
		c := meta.FindStatusCondition(mr.Status.Conditions, elementalv1.ConditionReady)
		if c == nil || !strings.Contains(c.Message, "Setting kind is not served") {
			return fmt.Errorf("Ready: %+v", c)
		}
		return nil
	})

	// A free inventory, and a selector that nothing handles yet.
	_, err = el.MachineInventory().Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: "host-1", Labels: map[string]string{"element": "fire"},
		Finalizers: []string{elementalv1.MachineInventoryFinalizer},
	}})
	require.NoError(t, err)
	eventually(time.Minute, func() error {
		mi, err := el.MachineInventory().Get(ns, "host-1", metav1.GetOptions{})
		if err != nil || mi.Status.Plan == nil || mi.Status.Plan.AppliedChecksum == "" {
			return fmt.Errorf("the agent has not acked the empty plan yet (%v)", err)
		}
		return nil
	})
	// It matches nothing: host-1 is left for the Machine's selector below.
	_, err = el.MachineInventorySelector().Create(&elementalv1.MachineInventorySelector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "early"},
		Spec: elementalv1.MachineInventorySelectorSpec{Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "water"}}}})
	require.NoError(t, err)
	testenv.Consistently(t, 2*time.Second, func() error {
		mis, err := el.MachineInventorySelector().Get(ns, "early", metav1.GetOptions{})
		if err != nil || len(mis.Finalizers) > 0 {
			return fmt.Errorf("handled without Cluster API (%v)", err)
		}
		return nil
	})

	// Rancher's Setting CRD, then server-url: the URL follows.
	require.NoError(t, env.InstallRancherCRDs())
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	_, err = mf.Management().V3().Setting().Create(&mgmtv3.Setting{ObjectMeta: metav1.ObjectMeta{Name: "server-url"}, Value: "https://rancher.example.test"})
	require.NoError(t, err)
	eventually(time.Minute, func() error {
		mr, err := el.MachineRegistration().Get(ns, "hosts", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !strings.HasPrefix(mr.Status.RegistrationURL, "https://rancher.example.test/elemental/registration/") ||
			!meta.IsStatusConditionTrue(mr.Status.Conditions, elementalv1.ConditionReady) {
			return fmt.Errorf("url %q, conditions %+v", mr.Status.RegistrationURL, mr.Status.Conditions)
		}
		return nil
	})

	// The Cluster API CRDs: the early selector is handled, and a Machine's
	// selector adopts the free inventory.
	require.NoError(t, env.InstallCAPICRDs())
	eventually(time.Minute, func() error {
		mis, err := el.MachineInventorySelector().Get(ns, "early", metav1.GetOptions{})
		if err != nil || len(mis.Finalizers) == 0 {
			return fmt.Errorf("not handled yet (%v)", err)
		}
		return nil
	})
	rancher, err := testenv.NewSimulatedRancher(env.Config)
	require.NoError(t, err)
	_, err = rancher.CreateMachine(ctx, ns, "m1", testenv.MachineOptions{
		Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}}, Script: "#!/bin/sh\necho bootstrap\n"})
	require.NoError(t, err)
	eventually(2*time.Minute, func() error {
		mis, err := el.MachineInventorySelector().Get(ns, "m1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !mis.Status.Ready || mis.Status.MachineInventoryRef == nil || mis.Status.MachineInventoryRef.Name != "host-1" {
			return fmt.Errorf("not adopted: ready=%v ref=%v", mis.Status.Ready, mis.Status.MachineInventoryRef)
		}
		return nil
	})
}
