// Package e2e runs the real operator binary (several processes, killed and
// restarted) against the real apiserver, with simulated hosts and Rancher.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var (
	env           *testenv.Env
	binary        string
	kubeconfig    string
	rancher       *testenv.SimulatedRancher
	inventories   elementalv1ctl.MachineInventoryClient
	selectors     elementalv1ctl.MachineInventorySelectorClient
	registrations elementalv1ctl.MachineRegistrationClient
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	// The simulated Rancher (registration tests) runs in this process, and
	// remotedialer logs every tunnel connection at info level, every dropped
	// one as a warning.
	logrus.SetLevel(logrus.ErrorLevel)
	dir, err := os.MkdirTemp("", "elemental-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	binary = filepath.Join(dir, "elemental-operator")
	build := exec.Command("go", "build", "-o", binary, "../..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the operator:", err)
		return 1
	}
	if env, err = testenv.Start(testenv.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	defer stopRancherServer() // before the apiserver goes
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if rancher, err = testenv.NewSimulatedRancher(env.Config); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := elementalctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	el := f.Elemental().V1beta1()
	inventories, selectors, registrations = el.MachineInventory(), el.MachineInventorySelector(), el.MachineRegistration()
	return m.Run()
}

// operatorProcess is one replica of the real binary.
type operatorProcess struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	mu   sync.Mutex
	done chan struct{}
}

func (p *operatorProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// startOperator runs one replica with registration disabled (direct mode
// without a listener) and short leader-election timings; extra flags come
// last, so they override those defaults (the flag package keeps the last
// value).
func startOperator(t *testing.T, leaseNamespace string, extra ...string) *operatorProcess {
	t.Helper()
	p := &operatorProcess{out: &bytes.Buffer{}, done: make(chan struct{})}
	args := []string{"--kubeconfig", kubeconfig, "--namespace", leaseNamespace,
		"--health-addr", "", "--metrics-addr", "", "--registration-addr", "", "--registration-mode", "direct",
		"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"}
	p.cmd = exec.Command(binary, append(args, extra...)...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			out := p.output()
			if len(out) > 20000 {
				out = out[len(out)-20000:]
			}
			t.Logf("operator %d output (tail):\n%s", p.cmd.Process.Pid, out)
		}
	})
	return p
}

// output is everything the process wrote so far.
func (p *operatorProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *operatorProcess) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *operatorProcess) term() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.kill()
		}
	}
}

func namespace(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ns, err := env.NewNamespace(ctx, "e2e")
	require.NoError(t, err)
	testenv.RunSimulatedAgents(ctx, env.Client, ns, 8)
	return ns
}

func createInventories(t *testing.T, ns string, n int) {
	t.Helper()
	require.NoError(t, testenv.Parallel(n, 16, func(i int) error {
		_, err := inventories.Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("host-%04d", i), Labels: map[string]string{"element": "fire"},
			Finalizers: []string{elementalv1.MachineInventoryFinalizer},
		}})
		return err
	}))
}

func createMachines(t *testing.T, ns string, from, n int) {
	t.Helper()
	require.NoError(t, testenv.Parallel(n, 16, func(i int) error {
		_, err := rancher.CreateMachine(context.Background(), ns, fmt.Sprintf("m-%04d", from+i), testenv.MachineOptions{
			Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}},
			Script:   "#!/bin/sh\necho bootstrap\n",
		})
		return err
	}))
}

// state is a consistent read of who holds what.
type state struct {
	pairs       map[string]string // selector → inventory
	doubleHeld  []string          // selectors holding more than one inventory
	doubleClaim []string          // inventories claimed by more than one selector
	ready       int
	waiting     int
}

func observe(t *testing.T, ns string) state {
	t.Helper()
	st := state{pairs: map[string]string{}}
	list, err := inventories.List(ns, metav1.ListOptions{})
	require.NoError(t, err)
	for _, mi := range list.Items {
		n := 0
		for _, ref := range mi.OwnerReferences {
			if ref.Kind != "MachineInventorySelector" {
				continue
			}
			n++
			if _, dup := st.pairs[ref.Name]; dup {
				st.doubleHeld = append(st.doubleHeld, ref.Name)
			}
			st.pairs[ref.Name] = mi.Name
		}
		if n > 1 {
			st.doubleClaim = append(st.doubleClaim, mi.Name)
		}
	}
	sels, err := selectors.List(ns, metav1.ListOptions{})
	require.NoError(t, err)
	for _, mis := range sels.Items {
		if mis.Status.Ready {
			st.ready++
		}
		for _, c := range mis.Status.Conditions {
			if c.Type == elementalv1.ConditionInventoryReady && c.Reason == elementalv1.ReasonWaitingForInventory {
				st.waiting++
			}
		}
	}
	return st
}

// watchInvariants checks, until stopped, that nothing is ever held twice.
func watchInvariants(t *testing.T, ns string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			st := observe(t, ns)
			if len(st.doubleHeld) > 0 || len(st.doubleClaim) > 0 {
				t.Errorf("invariant broken: selectors holding two %v, inventories claimed twice %v", st.doubleHeld, st.doubleClaim)
				return
			}
			time.Sleep(100 * time.Millisecond) // the invariant watcher's poll interval, not an assertion
		}
	}()
	return func() { cancel(); <-done }
}

// eventually polls at its own pace: each check lists many objects.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	testenv.EventuallyEvery(t, timeout, 250*time.Millisecond, check)
}
