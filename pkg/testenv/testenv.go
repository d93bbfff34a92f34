// Package testenv runs a real kube-apiserver and etcd on loopback for
// integration tests and the local demo, with our CRDs, the Cluster API core
// CRDs and a minimal Rancher Setting CRD installed.
//
// The binaries are built from Go modules by scripts/testenv, which caches them
// by version; Start runs that script itself when KUBEBUILDER_ASSETS is unset,
// so `go test ./...` works on a fresh clone (the first run builds for ~10 min).
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/elemental-operator/elemental-operator/pkg/crds"
)

//go:embed crds/*.yaml
var externalCRDs embed.FS

const (
	assetsEnv   = "KUBEBUILDER_ASSETS"
	capiCRDsEnv = "ELEMENTAL_CAPI_CRDS"
)

// Options choose what gets installed.
type Options struct {
	// NoElementalCRDs leaves our CRDs out, to test that the operator installs them.
	NoElementalCRDs bool
	// NoRancherCRDs leaves Rancher's management.cattle.io kinds out: a cluster
	// without Rancher.
	NoRancherCRDs bool
	// NoCAPICRDs leaves the Cluster API CRDs out (InstallCAPICRDs adds them
	// later).
	NoCAPICRDs bool
}

// rancherCRDs are the minimal management.cattle.io kinds a Rancher cluster
// serves that the operator, the chart and the simulated Rancher use.
func rancherCRDs() ([]*apiextv1.CustomResourceDefinition, error) {
	files, err := externalCRDs.ReadDir("crds")
	if err != nil {
		return nil, err
	}
	var out []*apiextv1.CustomResourceDefinition
	for _, f := range files {
		data, err := externalCRDs.ReadFile("crds/" + f.Name())
		if err != nil {
			return nil, err
		}
		objs, err := crds.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// Env is a running control plane.
type Env struct {
	Config *rest.Config
	Client kubernetes.Interface
	env    *envtest.Environment
	binDir string
}

// Start builds (or reuses) the binaries and starts etcd and kube-apiserver.
func Start(opts Options) (*Env, error) {
	if err := resolveAssets(assetsEnv, capiCRDsEnv); err != nil {
		return nil, err
	}
	binDir, err := wrapBinaries(os.Getenv(assetsEnv))
	if err != nil {
		return nil, err
	}
	reapOrphans(os.Getenv(assetsEnv))

	var install []*apiextv1.CustomResourceDefinition
	if !opts.NoElementalCRDs {
		ours, err := crds.Objects()
		if err != nil {
			return nil, err
		}
		install = append(install, ours...)
	}
	if !opts.NoRancherCRDs {
		rancher, err := rancherCRDs()
		if err != nil {
			return nil, err
		}
		install = append(install, rancher...)
	}

	var paths []string
	if !opts.NoCAPICRDs {
		paths = []string{os.Getenv(capiCRDsEnv)}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    binDir,
		ControlPlaneStartTimeout: 2 * time.Minute, // a loaded 2-core machine is slow
		ControlPlaneStopTimeout:  30 * time.Second,
		CRDInstallOptions: envtest.CRDInstallOptions{
			CRDs:               install,
			Paths:              paths,
			ErrorIfPathMissing: true,
		},
	}
	// Throwaway data: fsync only measures the disk, not the operator.
	if env.ControlPlane.Etcd == nil {
		env.ControlPlane.Etcd = &envtest.Etcd{}
	}
	env.ControlPlane.Etcd.Configure().Set("unsafe-no-fsync", "true")
	apiServer := env.ControlPlane.GetAPIServer()
	// Without kube-controller-manager nothing reconciles the kubernetes
	// Service endpoints; newer apiservers refuse 127.0.0.1 without this.
	apiServer.Configure().Set("endpoint-reconciler-type", "none")
	// Explicit, so it starts in a network namespace with no default route.
	apiServer.Configure().Set("advertise-address", "127.0.0.1")
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	// Tests write the spec's finalizer names, which the API server warns about.
	cfg.WarningHandler = rest.NoWarnings{}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Env{Config: cfg, Client: client, env: env, binDir: binDir}, nil
}

// InstallCAPICRDs installs the Cluster API CRDs into a running control plane
// (one started with NoCAPICRDs) and waits until they are served.
func (e *Env) InstallCAPICRDs() error {
	_, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{Paths: []string{os.Getenv(capiCRDsEnv)}, ErrorIfPathMissing: true})
	return err
}

// InstallRancherCRDs installs the minimal Rancher kinds into a running
// control plane (one started with NoRancherCRDs) and waits until they are served.
func (e *Env) InstallRancherCRDs() error {
	rancher, err := rancherCRDs()
	if err != nil {
		return err
	}
	_, err = envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{CRDs: rancher})
	return err
}

// Stop kills etcd and kube-apiserver and removes their data.
func (e *Env) Stop() error {
	err := e.env.Stop()
	_ = os.RemoveAll(e.binDir)
	return err
}

// AddUser provisions a user with the given groups and returns its config.
func (e *Env) AddUser(name string, groups ...string) (*rest.Config, error) {
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// WriteKubeconfig writes an admin kubeconfig for processes started by tests.
func (e *Env) WriteKubeconfig(path string) error {
	return WriteKubeconfig(e.Config, path)
}

// WriteKubeconfig serialises a rest.Config (certificate or token auth).
func WriteKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["env"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["env"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
	}
	kc.Contexts["env"] = &clientcmdapi.Context{Cluster: "env", AuthInfo: "env"}
	kc.CurrentContext = "env"
	return clientcmd.WriteToFile(*kc, path)
}

// resolveAssets runs scripts/testenv when the environment does not say where
// the binaries named by need are, so tests never skip for lack of them. The
// control plane needs only KUBEBUILDER_ASSETS and ELEMENTAL_CAPI_CRDS (what
// `scripts/testenv --only control-plane` reports, as the demo does); the real
// agent and the Cluster API manager ask for theirs when they start.
func resolveAssets(need ...string) error {
	missing := false
	for _, k := range need {
		if os.Getenv(k) == "" {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "testenv"))
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("scripts/testenv: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			_ = os.Setenv(k, v)
		}
	}
	for _, k := range need {
		if os.Getenv(k) == "" {
			return fmt.Errorf("scripts/testenv did not report %s", k)
		}
	}
	return nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// NewNamespace creates a namespace with a random suffix, so tests never share state.
func (e *Env) NewNamespace(ctx context.Context, prefix string) (string, error) {
	ns, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return ns.Name, nil
}
