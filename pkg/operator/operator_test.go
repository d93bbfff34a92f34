package operator_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var (
	env        *testenv.Env
	binary     string
	kubeconfig string
)

// TestMain runs the real binary against a bare apiserver: no elemental CRDs,
// so every test also proves the operator installs them itself.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "elemental-operator-test-")
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
	env, err = testenv.Start(testenv.Options{NoElementalCRDs: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

type process struct {
	cmd     *exec.Cmd
	out     *testenv.SyncBuffer
	health  string
	metrics string
	done    chan struct{}
	exitErr error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := testenv.FreeAddr()
	require.NoError(t, err)
	return addr
}

// start runs the operator binary; extraEnv entries are KEY=VALUE.
func start(t *testing.T, namespace string, extraEnv ...string) *process {
	t.Helper()
	p := &process{out: &testenv.SyncBuffer{}, health: freeAddr(t), metrics: freeAddr(t), done: make(chan struct{})}
	p.cmd = exec.Command(binary,
		"--kubeconfig", kubeconfig,
		"--health-addr", p.health,
		"--metrics-addr", p.metrics,
		"--registration-addr", "",
		"--leader-elect-lease-duration", "4s",
		"--leader-elect-renew-deadline", "3s",
		"--leader-elect-retry-period", "500ms",
	)
	p.cmd.Env = append(os.Environ(), "ELEMENTAL_OPERATOR_NAMESPACE="+namespace)
	p.cmd.Env = append(p.cmd.Env, extraEnv...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	require.NoError(t, p.cmd.Start())
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.stop(t)
		if t.Failed() {
			t.Logf("operator output (pid %d):\n%s", p.cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) error {
	select {
	case <-p.done:
		return p.exitErr
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("operator did not stop within 30s of SIGTERM")
	}
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// leading reads the elemental_operator_leader gauge from /metrics.
func (p *process) leading() bool {
	code, body := get("http://" + p.metrics + "/metrics")
	return code == http.StatusOK && strings.Contains(body, "\nelemental_operator_leader 1\n")
}

func (p *process) waitReady(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		code, _ := get("http://" + p.health + "/readyz")
		return code == http.StatusOK
	}, 2*time.Minute, 100*time.Millisecond, "operator never became ready")
}

func newNamespace(t *testing.T) string {
	ns, err := env.NewNamespace(context.Background(), "operator")
	require.NoError(t, err)
	return ns
}

func TestHelpListsEveryFlag(t *testing.T) {
	out, err := exec.Command(binary, "--help").CombinedOutput()
	require.NoError(t, err, string(out))
	for _, flag := range []string{"kubeconfig", "namespace", "install-crds", "leader-elect", "workers",
		"metrics-addr", "health-addr", "registration-addr", "server-url", "debug"} {
		assert.Regexp(t, `(?m)^  -`+flag+`( |$)`, string(out), flag)
		assert.Contains(t, string(out), "$ELEMENTAL_OPERATOR_"+strings.ToUpper(strings.ReplaceAll(flag, "-", "_")), flag)
	}
}

func TestStartsOnABareAPIServer(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	p := start(t, ns)
	p.waitReady(t)

	// It installed its CRDs, and they are served.
	ext := apiextclient.NewForConfigOrDie(env.Config)
	for _, name := range []string{"machineregistrations", "machineinventories", "machineinventoryselectors", "machineinventoryselectortemplates"} {
		crd, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name+".elemental.cattle.io", metav1.GetOptions{})
		require.NoError(t, err, name)
		established := false
		for _, c := range crd.Status.Conditions {
			established = established || (c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue)
		}
		assert.True(t, established, name)
	}
	// And, with them, the plan Secret admission policy and its binding.
	_, err := env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "elemental-plan-secrets", metav1.GetOptions{})
	require.NoError(t, err, "admission policy")
	_, err = env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, "elemental-plan-secrets", metav1.GetOptions{})
	require.NoError(t, err, "admission policy binding")

	// It took the lease in the namespace given through the environment.
	require.Eventually(t, p.leading, time.Minute, 100*time.Millisecond)
	lease, err := env.Client.CoordinationV1().Leases(ns).Get(ctx, "elemental-operator", metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, lease.Spec.HolderIdentity)
	assert.NotEmpty(t, *lease.Spec.HolderIdentity)

	code, body := get("http://" + p.health + "/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok", body)
	code, body = get("http://" + p.metrics + "/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `elemental_operator_build_info{version="dev"} 1`)
	assert.Contains(t, body, "go_goroutines")

	require.NoError(t, p.stop(t), "SIGTERM must give a clean exit")
	// A clean stop releases the lease rather than letting it expire.
	lease, err = env.Client.CoordinationV1().Leases(ns).Get(ctx, "elemental-operator", metav1.GetOptions{})
	require.NoError(t, err)
	assert.True(t, lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "", "lease still held after a clean stop")
}

func TestSecondInstanceFollowsThenTakesOver(t *testing.T) {
	ns := newNamespace(t)
	first := start(t, ns)
	first.waitReady(t)
	require.Eventually(t, first.leading, time.Minute, 100*time.Millisecond)

	second := start(t, ns)
	second.waitReady(t)
	// Over several retry periods (500ms) the follower must never lead.
	testenv.Consistently(t, 3*time.Second, func() error {
		if second.leading() {
			return fmt.Errorf("second instance leads while the first holds the lease")
		}
		if !first.leading() {
			return fmt.Errorf("first instance lost the lease")
		}
		return nil
	})

	require.NoError(t, first.stop(t))
	require.Eventually(t, second.leading, 30*time.Second, 100*time.Millisecond, "follower never took over")
}

func TestRefusesAnUnusableConfiguration(t *testing.T) {
	out, err := exec.Command(binary, "--kubeconfig", kubeconfig, "--workers", "0", "--health-addr", "", "--metrics-addr", "").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "--workers must be at least 1")

	out, err = exec.Command(binary, "--kubeconfig", filepath.Join(t.TempDir(), "missing"), "--health-addr", "", "--metrics-addr", "").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "kubeconfig")
}

func TestTakenPortIsAStartupError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	out, err := exec.Command(binary, "--kubeconfig", kubeconfig, "--health-addr", l.Addr().String(), "--metrics-addr", "").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "listening on "+l.Addr().String())
}
