package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const systemAgentEnv = "ELEMENTAL_SYSTEM_AGENT"

// sandboxDirs get a private tmpfs each, so plans cannot touch the machine.
// /usr/local/bin too: the release plan runs uninstallers from there.
var sandboxDirs = []string{"/var/lib/rancher", "/etc/rancher", "/var/lib/elemental", "/run/elemental", "/usr/local/etc", "/usr/local/bin", "/oem"}

// Agent is a real rancher-system-agent in remote mode, watching one plan
// Secret, inside a private mount namespace.
type Agent struct {
	cmd  *exec.Cmd
	out  *SyncBuffer
	done chan struct{}
	dir  string
}

// AgentOptions say where the agent connects and what it watches.
type AgentOptions struct {
	// Server is the API server URL; CAData its CA bundle.
	Server string
	CAData []byte
	// Token is the agent's bearer token (the per-inventory credential).
	Token      string
	Namespace  string
	SecretName string
	// ConnectionInfo, when set, is used verbatim as the connection-info file
	// (what elemental-register wrote on the host) instead of one built from
	// the fields above.
	ConnectionInfo []byte
	// Stubs are executables (name -> shell script) put first on the agent's
	// PATH, e.g. a hostnamectl that needs no systemd.
	Stubs map[string]string
}

// StartAgent runs the agent as root under `unshare --mount`. It fails, never
// skips, when that is impossible: the suite runs where it is possible.
func StartAgent(opts AgentOptions) (*Agent, error) {
	if err := resolveAssets(systemAgentEnv); err != nil {
		return nil, err
	}
	bin := os.Getenv(systemAgentEnv)
	if bin == "" {
		return nil, fmt.Errorf("%s is not set", systemAgentEnv)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the real system-agent needs root (its config must be root-owned and it runs in a mount namespace)")
	}
	dir, err := os.MkdirTemp("", "elemental-agent-")
	if err != nil {
		return nil, err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cluster"] = &clientcmdapi.Cluster{Server: opts.Server, CertificateAuthorityData: opts.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: opts.Token}
	kc.Contexts["context"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "user"}
	kc.CurrentContext = "context"
	kubeconfig, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, err
	}
	conn := opts.ConnectionInfo
	if conn == nil {
		conn, _ = json.Marshal(map[string]string{"kubeConfig": string(kubeconfig), "namespace": opts.Namespace, "secretName": opts.SecretName})
	}
	path := os.Getenv("PATH")
	if len(opts.Stubs) > 0 {
		bin := filepath.Join(dir, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			return nil, err
		}
		for name, script := range opts.Stubs {
			if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
				return nil, err
			}
		}
		path = bin + ":" + path
	}
	config, _ := json.Marshal(map[string]interface{}{
		"workDirectory":         "/var/lib/elemental/agent/work",
		"appliedPlanDirectory":  "/var/lib/elemental/agent/applied",
		"localPlanDirectory":    "/var/lib/elemental/agent/plans",
		"remoteEnabled":         true,
		"localEnabled":          false,
		"connectionInfoFile":    filepath.Join(dir, "elemental_connection.json"),
		"preserveWorkDirectory": false,
	})
	// The agent insists on 0600 root-owned files whose names say .json/.yaml.
	if err := os.WriteFile(filepath.Join(dir, "elemental_connection.json"), conn, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o600); err != nil {
		return nil, err
	}
	script := "set -e; mount --make-rprivate /\n"
	for _, d := range sandboxDirs {
		script += fmt.Sprintf("mkdir -p %s; mount -t tmpfs -o mode=0755 tmpfs %s\n", d, d)
	}
	script += "exec " + bin + " sentinel\n"
	a := &Agent{out: &SyncBuffer{}, done: make(chan struct{}), dir: dir}
	// A private UTS namespace too: a plan that sets the hostname sets the sandbox's.
	a.cmd = exec.Command("unshare", "--mount", "--uts", "--fork", "--kill-child", "--", "sh", "-c", script)
	a.cmd.Env = append(os.Environ(), "PATH="+path, "CATTLE_AGENT_CONFIG="+filepath.Join(dir, "config.json"), "CATTLE_LOGLEVEL=debug")
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	// Die with the test process, like the control plane.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	return a, nil
}

// AgentOptionsFor fills Server and CAData from a rest.Config.
func AgentOptionsFor(cfg *rest.Config, token, namespace, secret string) AgentOptions {
	return AgentOptions{Server: cfg.Host, CAData: cfg.CAData, Token: token, Namespace: namespace, SecretName: secret}
}

// Output is what the agent logged so far.
func (a *Agent) Output() string { return a.out.String() }

// HostPath is where path inside the agent's sandbox can be read from outside
// (through /proc/<agent>/root), or "" while the agent is not running.
func (a *Agent) HostPath(path string) string {
	if a.Exited() {
		return ""
	}
	// unshare --fork runs sh, which execs the agent: unshare's only child.
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", a.cmd.Process.Pid, a.cmd.Process.Pid))
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(children))
	if len(fields) == 0 {
		return ""
	}
	return filepath.Join("/proc", fields[0], "root", path)
}

// Exited reports whether the agent process ended.
func (a *Agent) Exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// Stop kills the agent (and its sandbox) and waits for it.
func (a *Agent) Stop() {
	if !a.Exited() {
		_ = a.cmd.Process.Kill()
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
		}
	}
	_ = os.RemoveAll(a.dir)
}
