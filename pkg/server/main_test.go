package server_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/server"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
	"github.com/elemental-operator/elemental-operator/pkg/tunnel"
)

// viaEnv=rancher runs every test of this package through the simulated
// Rancher's URL and the APIService tunnel instead of the direct listener:
// registration must behave byte for byte the same on both paths.
const viaEnv = "ELEMENTAL_TEST_VIA"

var (
	env *testenv.Env
	srv *server.Server
	// baseURL is where hosts register (Rancher's URL via the tunnel, or the
	// direct listener) and hostCA the CA they are given for it.
	baseURL, hostCA string
	// directURL is the direct listener, also served via the tunnel.
	directURL     string
	rancher       *testenv.Rancher
	writes        *testenv.WriteCounter
	registrations elementalv1ctl.MachineRegistrationClient
	inventories   elementalv1ctl.MachineInventoryClient
	// operatorNS is the operator's namespace (the identity key's home).
	operatorNS string
)

const (
	messageTimeout = 2 * time.Second
	idleTimeout    = 2 * time.Second
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Fuzzing (the coordinator and every worker run this binary) needs no
	// apiserver: the fuzz targets are pure.
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	env, err = testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
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
	operatorNS = ns

	// The server on its own (every replica runs one), its writes counted.
	srvCfg, counter := testenv.CountWrites(env.Config)
	writes = counter
	addr, err := testenv.FreeAddr()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	directURL = "https://" + addr
	if err := startServer(ctx, srvCfg, ns, addr, os.Getenv(viaEnv) == "rancher"); err != nil {
		fmt.Fprintln(os.Stderr, "registration server:", err)
		return 1
	}
	defer srv.Stop()

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

// serverOptions: every test host registers from 127.0.0.1 (and the tests'
// HTTP clients leave keep-alive connections behind), so there is no
// per-source limit unless a test sets one; idle connections close fast.
func serverOptions(addr, ns string, mode endpoints.Mode) server.Options {
	return server.Options{Addr: addr, Namespace: ns, MessageTimeout: messageTimeout, MaxPerSource: -1,
		IdleTimeout: idleTimeout, Endpoints: endpoints.Static{Mode: mode, RegistrationURL: directURL}}
}

// startServer starts the registration server: on its own listener only
// (direct: server-url names it, as before Rancher's tunnel existed), or in
// both modes with the tunnel to a simulated Rancher whose URL hosts use.
func startServer(ctx context.Context, cfg *rest.Config, ns, addr string, viaRancher bool) error {
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		return err
	}
	if !viaRancher {
		if srv, err = server.Start(ctx, cfg, serverOptions(addr, ns, endpoints.Direct)); err != nil {
			return err
		}
		baseURL, hostCA = directURL, srv.CACert()
		_, err = mf.Management().V3().Setting().Create(&mgmtv3.Setting{ObjectMeta: metav1.ObjectMeta{Name: "server-url"}, Value: baseURL})
		return err
	}
	if rancher, err = testenv.StartRancher(env.Config, testenv.RancherOptions{}); err != nil {
		return err
	}
	context.AfterFunc(ctx, rancher.Stop)
	if srv, err = server.Start(ctx, cfg, serverOptions(addr, ns, endpoints.Both)); err != nil {
		return err
	}
	// What the chart creates next to Rancher.
	if _, err := mf.Management().V3().APIService().Create(&mgmtv3.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: "elemental-operator"},
		Spec:       mgmtv3.APIServiceSpec{SecretName: "elemental-operator", SecretNamespace: ns, PathPrefixes: []string{"/elemental/"}},
	}); err != nil {
		return err
	}
	if _, err := tunnel.Start(ctx, env.Client, tunnel.Options{Namespace: ns, Secret: "elemental-operator",
		Handler: srv, NewServer: srv.NewHTTPServer, Listener: srv.TunnelListener}); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := rancher.WaitSessions(wctx, "elemental-operator", 1); err != nil {
		return fmt.Errorf("the tunnel never connected: %w", err)
	}
	baseURL, hostCA = rancher.URL, string(rancher.CAPEM)
	return nil
}
