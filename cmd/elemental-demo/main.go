// Command elemental-demo runs the operator against an embedded local control
// plane (a real kube-apiserver and etcd on loopback) and narrates what
// happens. `make demo` runs it; --hold keeps everything up for kubectl.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

func main() {
	hold := flag.Bool("hold", false, "keep the control plane and operator running until Ctrl-C")
	verbose := flag.Bool("v", false, "print the log of the operator, the simulated Rancher and the tunnel here instead of into a file")
	flag.Parse()
	// One log, logrus: the operator's, client-go's and envtest's (through
	// klog), and the simulated Rancher's and remotedialer's on both ends of
	// the tunnel (a line per connection, a warning per dropped session).
	operator.RouteKlogToLogrus()
	ctrllog.SetLogger(klog.NewKlogr())
	logFile := ""
	if !*verbose {
		// The narration stays clean: the log goes to a file, named up front.
		logFile = filepath.Join(os.TempDir(), "elemental-demo.log")
		f, err := os.Create(logFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo failed:", err)
			os.Exit(1)
		}
		defer func() { _ = f.Close() }()
		logrus.SetOutput(f)
		step("the log of the operator, the simulated Rancher and the tunnel goes to %s (-v prints it here)", logFile)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		if logFile != "" {
			fmt.Fprintln(os.Stderr, "the log is in", logFile)
		}
		os.Exit(1)
	}
}

func step(format string, args ...interface{}) {
	fmt.Printf("==> "+format+"\n", args...)
}

func run(ctx context.Context, hold bool) error {
	step("starting a local kube-apiserver and etcd (no Elemental CRDs yet)")
	env, err := testenv.Start(testenv.Options{NoElementalCRDs: true})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	step("apiserver is up at %s", env.Config.Host)

	step("starting a simulated Rancher: its Settings, its APIService controller and its /v3/connect tunnel server")
	rancher, err := testenv.StartRancher(env.Config, testenv.RancherOptions{})
	if err != nil {
		return err
	}
	defer rancher.Stop()
	step("Rancher serves at %s (its server-url Setting; cacerts holds its CA)", rancher.URL)

	cfg := operator.DefaultConfig()
	cfg.Namespace = "cattle-elemental-system"
	cfg.MetricsAddr, cfg.HealthAddr = "127.0.0.1:18080", "127.0.0.1:19440"
	// As installed next to Rancher: hosts reach registration only through
	// Rancher's URL, so there is no listener of our own.
	cfg.RegistrationMode, cfg.RegistrationAddr = "rancher", ""
	if err := createAPIService(ctx, env, rancher, cfg.Namespace, cfg.APIServiceSecret); err != nil {
		return err
	}

	opCtx, cancelOp := context.WithCancel(ctx)
	defer cancelOp()
	opDone := make(chan error, 1)
	step("starting elemental-operator (leader election on, lease %s/%s)", cfg.Namespace, operator.LeaseName)
	go func() { opDone <- operator.RunWithConfig(opCtx, cfg, env.Config, "demo") }()

	ext := apiextclient.NewForConfigOrDie(env.Config)
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := ext.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{LabelSelector: "cluster.x-k8s.io/provider=infrastructure-elemental"})
		return err == nil && len(list.Items) == 4, nil
	})
	if err != nil {
		return fmt.Errorf("operator did not install its CRDs: %w", err)
	}
	list, _ := ext.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{LabelSelector: "cluster.x-k8s.io/provider=infrastructure-elemental"})
	for _, crd := range list.Items {
		step("operator installed CRD %s", crd.Name)
	}

	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		lease, err := env.Client.CoordinationV1().Leases(cfg.Namespace).Get(ctx, operator.LeaseName, metav1.GetOptions{})
		return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "", nil
	})
	if err != nil {
		return fmt.Errorf("operator never took the lease: %w", err)
	}
	lease, _ := env.Client.CoordinationV1().Leases(cfg.Namespace).Get(ctx, operator.LeaseName, metav1.GetOptions{})
	step("operator is leading (holder %s); health on http://%s/healthz, metrics on http://%s/metrics",
		*lease.Spec.HolderIdentity, cfg.HealthAddr, cfg.MetricsAddr)

	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = rancher.WaitSessions(wctx, apiServiceName, 1)
	cancel()
	if err != nil {
		return fmt.Errorf("operator never connected to Rancher: %w", err)
	}
	step("operator dialed Rancher's /v3/connect with that token: its tunnel session is up, Rancher routes /elemental/* through it")

	registrationURL, err := seedFlow(ctx, env, rancher)
	if err != nil {
		return err
	}

	if hold {
		kubeconfig := filepath.Join(os.TempDir(), "elemental-demo.kubeconfig")
		if err := env.WriteKubeconfig(kubeconfig); err != nil {
			return err
		}
		caFile := filepath.Join(os.TempDir(), "elemental-demo-rancher-ca.pem")
		if err := os.WriteFile(caFile, rancher.CAPEM, 0o644); err != nil {
			return err
		}
		step("holding (Ctrl-C to stop); try:\n    kubectl --kubeconfig %s get machineinventories -A\n    curl --cacert %s %s",
			kubeconfig, caFile, registrationURL)
		<-ctx.Done()
	}

	step("stopping the operator (it releases the lease)")
	cancelOp()
	if err := <-opDone; err != nil {
		return err
	}
	step("done")
	return nil
}
