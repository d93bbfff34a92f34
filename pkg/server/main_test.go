package server_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/server"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var (
	env           *testenv.Env
	srv           *server.Server
	baseURL       string
	writes        *testenv.WriteCounter
	registrations elementalv1ctl.MachineRegistrationClient
	inventories   elementalv1ctl.MachineInventoryClient
)

const messageTimeout = 2 * time.Second

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	env, err = testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()
	ef, err := elementalctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	registrations = ef.Elemental().V1beta1().MachineRegistration()
	inventories = ef.Elemental().V1beta1().MachineInventory()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns, err := env.NewNamespace(ctx, "operator")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	// The server on its own (every replica runs one), its writes counted.
	srvCfg, counter := testenv.CountWrites(env.Config)
	writes = counter
	addr, err := testenv.FreeAddr()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	baseURL = "https://" + addr
	srv, err = server.Start(ctx, srvCfg, server.Options{Addr: addr, Namespace: ns, MessageTimeout: messageTimeout,
		Endpoints: endpoints.Static{Mode: endpoints.Direct, RegistrationURL: baseURL}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "registration server:", err)
		return 1
	}
	defer srv.Stop()
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := mf.Management().V3().Setting().Create(&mgmtv3.Setting{ObjectMeta: metav1.ObjectMeta{Name: "server-url"}, Value: baseURL}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	// The controllers (the MachineRegistration controller sets tokens).
	cfg := operator.DefaultConfig()
	cfg.LeaderElect, cfg.InstallCRDs = false, false
	cfg.HealthAddr, cfg.MetricsAddr, cfg.RegistrationAddr = "", "", ""
	cfg.Namespace = ns
	done := make(chan error, 1)
	opCtx, opCancel := context.WithCancel(ctx)
	go func() { done <- operator.RunWithConfig(opCtx, cfg, env.Config, "test") }()
	code := m.Run()
	opCancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "operator:", err)
		return 1
	}
	return code
}

// newRegistration creates an MR and waits until it is Ready and the
// server's cache knows its token.
func newRegistration(t *testing.T, ns, name string, spec elementalv1.MachineRegistrationSpec) *elementalv1.MachineRegistration {
	t.Helper()
	_, err := registrations.Create(&elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})
	require.NoError(t, err)
	var mr *elementalv1.MachineRegistration
	eventually(t, 20*time.Second, func() error {
		if mr, err = registrations.Get(ns, name, metav1.GetOptions{}); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(mr.Status.Conditions, elementalv1.ConditionReady) {
			return fmt.Errorf("not ready: %+v", mr.Status.Conditions)
		}
		code, _ := plainGet(t, mr.Status.RegistrationURL)
		if code != 200 {
			return fmt.Errorf("server answers %d", code)
		}
		return nil
	})
	return mr
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns, err := env.NewNamespace(context.Background(), "reg")
	require.NoError(t, err)
	return ns
}

func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	testenv.Eventually(t, timeout, check)
}

func events(t *testing.T, ns string) []corev1.Event {
	t.Helper()
	list, err := env.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	return list.Items
}

func inventoryByHash(t *testing.T, ns, hash string) *elementalv1.MachineInventory {
	t.Helper()
	list, err := inventories.List(ns, metav1.ListOptions{})
	require.NoError(t, err)
	for i := range list.Items {
		if list.Items[i].Spec.MachineHash == hash || list.Items[i].Spec.TPMHash == hash {
			return &list.Items[i]
		}
	}
	return nil
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
