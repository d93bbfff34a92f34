package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

const capiManagerEnv = "ELEMENTAL_CAPI_MANAGER"

// CAPIManager is the real Cluster API core manager (the controllers Rancher
// embeds), built by scripts/testenv.
type CAPIManager struct {
	cmd  *exec.Cmd
	out  *SyncBuffer
	done chan struct{}
	dir  string
}

// StartCAPIManager runs the manager against cfg and waits until it is ready.
// Its webhook server binds every interface on a fixed port, so callers run
// in a private network namespace (ReexecInPrivateNetwork).
func StartCAPIManager(cfg *rest.Config) (*CAPIManager, error) {
	if err := resolveAssets(capiManagerEnv); err != nil {
		return nil, err
	}
	bin := os.Getenv(capiManagerEnv)
	if bin == "" {
		return nil, fmt.Errorf("%s is not set (scripts/testenv builds the manager)", capiManagerEnv)
	}
	dir, err := os.MkdirTemp("", "elemental-capi-")
	if err != nil {
		return nil, err
	}
	m := &CAPIManager{out: &SyncBuffer{}, done: make(chan struct{}), dir: dir}
	if err := WriteKubeconfig(cfg, filepath.Join(dir, "kubeconfig")); err != nil {
		return nil, err
	}
	// No webhook is registered with the apiserver, but the manager refuses
	// to start without a serving certificate.
	ca, err := newTestCA("capi-webhook")
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := ca.serving()
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "webhook")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), certPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), keyPEM, 0o600); err != nil {
		return nil, err
	}
	health, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	diag, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(bin,
		"--kubeconfig="+filepath.Join(dir, "kubeconfig"),
		"--webhook-cert-dir="+certDir, "--webhook-port=9443",
		"--health-addr="+health,
		"--diagnostics-address="+diag, "--insecure-diagnostics",
		"--leader-elect=false",
		// Fast resyncs: the tests wait on the manager, not on a timer.
		"--sync-period=30s",
	)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = m.cmd.Wait(); close(m.done) }()

	url := "http://" + health + "/readyz"
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			return nil, fmt.Errorf("the Cluster API manager exited:\n%s", Tail(m.out.String(), 4000))
		default:
		}
		if resp, err := http.Get(url); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	m.Stop()
	return nil, fmt.Errorf("the Cluster API manager was not ready within 2m:\n%s", Tail(m.out.String(), 4000))
}

// Output is what the manager logged so far.
func (m *CAPIManager) Output() string { return m.out.String() }

// Stop kills the manager and waits for it.
func (m *CAPIManager) Stop() {
	_ = m.cmd.Process.Kill()
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
	}
	_ = os.RemoveAll(m.dir)
}
