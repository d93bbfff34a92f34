// Package capi runs the whole provisioning path against the real Cluster API
// core manager: hosts register with our client through a simulated Rancher
// front door, real rancher-system-agents (sandboxed) watch their plan
// Secrets through it, and MachineDeployments whose infrastructureRef is our
// template make CAPI clone selectors that the operator pairs and bootstraps.
package capi

import (
	"fmt"
	"os"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

const operatorNamespace = "cattle-elemental-system"

var (
	env       *testenv.Env
	dyn       dynamic.Interface
	el        elementalv1ctl.Interface
	frontDoor *testenv.RancherFrontDoor
	capi      *testenv.CAPIManager
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
	var err error
	if env, err = testenv.Start(testenv.Options{}); err != nil {
		return fail(err)
	}
	defer env.Stop()
	if dyn, err = dynamic.NewForConfig(env.Config); err != nil {
		return fail(err)
	}
	f, err := elementalctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		return fail(err)
	}
	el = f.Elemental().V1beta1()

	// The registration server's port is chosen first so the front door
	// (server-url) can point at it before the operator starts.
	regAddr, err := testenv.FreeAddr()
	if err != nil {
		return fail(err)
	}
	if frontDoor, err = testenv.StartRancherFrontDoor(env.Config, "https://"+regAddr); err != nil {
		return fail(err)
	}
	defer frontDoor.Stop()
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		return fail(err)
	}
	for name, value := range map[string]string{"server-url": frontDoor.URL, "cacerts": string(frontDoor.CAPEM)} {
		if _, err := mf.Management().V3().Setting().Create(&mgmtv3.Setting{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}); err != nil {
			return fail(err)
		}
	}
	stop := testenv.RunOperator(env.Config, func(c *operator.Config) {
		c.Namespace = operatorNamespace
		c.RegistrationAddr = regAddr
	})
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, "operator:", err)
		}
	}()
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
