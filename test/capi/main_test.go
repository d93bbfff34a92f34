// Package capi runs the whole provisioning path against the real Cluster API
// core manager, with hosts reaching the operator only the way they do next to
// a real Rancher: the operator runs in rancher registration mode with no
// listener of its own and serves /elemental/ through the APIService tunnel of
// a simulated Rancher (testenv.StartRancher); hosts register with our client
// at Rancher's URL, with the CA the registration config gives them; real
// rancher-system-agents (sandboxed) watch their plan Secrets through
// Rancher's /k8s/clusters/local with that same CA; and MachineDeployments
// whose infrastructureRef is our template make CAPI clone selectors that the
// operator pairs and bootstraps. Rancher's failures (restart, token
// rotation, no session) are exercised against the same operator.
package capi

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

const (
	operatorNamespace = "cattle-elemental-system"
	// apiServiceName is the APIService the chart creates; Rancher fills the
	// Secret of the same name in the operator's namespace for it.
	apiServiceName = "elemental-operator"
	// sessionWait is how long Rancher holds a request on /elemental/ for a
	// tunnel session before its 503 (15 s in Rancher; short here so the
	// operator-down case is quick).
	sessionWait = 2 * time.Second
)

var (
	env     *testenv.Env
	dyn     dynamic.Interface
	el      elementalv1ctl.Interface
	rancher *testenv.Rancher
	capi    *testenv.CAPIManager

	// registrationAddr is the chart's --registration-addr, given to the
	// operator although rancher mode must not listen on it; healthAddr
	// serves the operator's /readyz/rancher-tunnel.
	registrationAddr, healthAddr string

	operatorMu   sync.Mutex
	stopOperator func() error // nil while the operator is stopped
)

func TestMain(m *testing.M) {
	// The CAPI manager's webhook server binds every interface.
	if code, parent := testenv.ReexecInPrivateNetwork(); parent {
		os.Exit(code)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	ctx := context.Background()
	var err error
	if env, err = testenv.Start(testenv.Options{}); err != nil {
		return fail(err)
	}
	defer func() { _ = env.Stop() }()
	if dyn, err = dynamic.NewForConfig(env.Config); err != nil {
		return fail(err)
	}
	f, err := elementalctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		return fail(err)
	}
	el = f.Elemental().V1beta1()

	// lasso keeps in a global whether its controllers record metrics, and the
	// operator's metrics.Register sets it: the simulated Rancher runs lasso
	// controllers in this process too, so that is done before any start (the
	// operator process does it first thing as well).
	metrics.Register("test")

	// Rancher writes its Settings (server-url, cacerts, internal-*) and
	// serves /v3/connect, /k8s/clusters/local and whatever APIServices claim.
	if rancher, err = testenv.StartRancher(env.Config, testenv.RancherOptions{SessionWait: sessionWait}); err != nil {
		return fail(err)
	}
	defer rancher.Stop()

	// What the chart installs: its release namespace and the APIService
	// claiming /elemental/, whose Secret Rancher writes there.
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fail(err)
	}
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		return fail(err)
	}
	if _, err := mf.Management().V3().APIService().Create(&mgmtv3.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: apiServiceName},
		Spec: mgmtv3.APIServiceSpec{
			SecretName: apiServiceName, SecretNamespace: operatorNamespace,
			PathPrefixes: []string{"/elemental/"},
		},
	}); err != nil {
		return fail(err)
	}

	if registrationAddr, err = testenv.FreeAddr(); err != nil {
		return fail(err)
	}
	if healthAddr, err = testenv.FreeAddr(); err != nil {
		return fail(err)
	}
	startOperator()
	defer func() {
		if err := stopRunningOperator(); err != nil {
			fmt.Fprintln(os.Stderr, "operator:", err)
		}
	}()
	if err := waitTunnel(ctx, time.Minute); err != nil {
		return fail(err)
	}

	if capi, err = testenv.StartCAPIManager(env.Config); err != nil {
		return fail(err)
	}
	defer capi.Stop()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "Cluster API manager log (tail):\n%s\n", testenv.Tail(capi.Output(), 6000))
	}
	return code
}

// startOperator runs the operator in-process in rancher mode, as the chart
// runs it next to Rancher (its --registration-addr left at a real address),
// unless it runs already.
func startOperator() {
	operatorMu.Lock()
	defer operatorMu.Unlock()
	if stopOperator != nil {
		return
	}
	stopOperator = testenv.RunOperator(env.Config, func(c *operator.Config) {
		c.Namespace = operatorNamespace
		c.RegistrationMode = "rancher"
		c.APIServiceSecret = apiServiceName
		c.RegistrationAddr = registrationAddr
		c.HealthAddr = healthAddr
	})
}

// stopRunningOperator stops the operator if it runs and reports how it ended.
func stopRunningOperator() error {
	operatorMu.Lock()
	defer operatorMu.Unlock()
	if stopOperator == nil {
		return nil
	}
	err := stopOperator()
	stopOperator = nil
	return err
}

// waitTunnel waits until Rancher routes /elemental/ to a session of ours.
func waitTunnel(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return rancher.WaitSessions(ctx, apiServiceName, 1)
}
