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

	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

func main() {
	hold := flag.Bool("hold", false, "keep the control plane and operator running until Ctrl-C")
	verbose := flag.Bool("v", false, "show the operator's own log")
	flag.Parse()
	operator.RouteKlogToLogrus()
	if !*verbose {
		logrus.SetLevel(logrus.WarnLevel)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
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
	defer env.Stop()
	step("apiserver is up at %s", env.Config.Host)

	cfg := operator.DefaultConfig()
	cfg.Namespace = "cattle-elemental-system"
	cfg.MetricsAddr, cfg.HealthAddr, cfg.RegistrationAddr = "127.0.0.1:18080", "127.0.0.1:19440", "127.0.0.1:18443"
	// The simulated Rancher has no server-url Setting: point hosts at the
	// embedded registration server directly.
	cfg.RegistrationMode = "direct"
	cfg.ServerURL = "https://127.0.0.1:18443"
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

	if err := seedFlow(ctx, env, cfg.Namespace); err != nil {
		return err
	}

	if hold {
		kubeconfig := filepath.Join(os.TempDir(), "elemental-demo.kubeconfig")
		if err := env.WriteKubeconfig(kubeconfig); err != nil {
			return err
		}
		step("holding; try: kubectl --kubeconfig %s get crds (Ctrl-C to stop)", kubeconfig)
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
