package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var (
	floorChild      = flag.Bool("floor-child", false, "internal: run the floor controller (floor.go) in this process")
	floorKubeconfig = flag.String("floor-kubeconfig", "", "internal: kubeconfig of -floor-child")
	floorNamespace  = flag.String("floor-namespace", "", "internal: namespace of -floor-child")
)

// result is one controller's run, for the comparison table.
type result struct {
	kind               string
	adoptions          int
	phase1             time.Duration // inventories created → all Available
	allReady, settled  time.Duration // controller start → all selectors ready / inventories provisioned
	p50, p99           time.Duration // controller start → each selector seen ready
	writes             float64       // per adoption, without events and leases
	conflicts, doubles int
	cpu                time.Duration
	rssKiB             int
	restart            *restartResult
}

type restartResult struct {
	untilAdopted time.Duration // process start → a new selector ready
	cpu          time.Duration
	rssKiB       int
}

func printTable(results []result) {
	fmt.Printf("\n| controller | phase 1 | all ready | ready p50 / p99 | writes per adoption | conflicts | double claims | CPU | peak RSS |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|\n")
	r := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	for _, res := range results {
		fmt.Printf("| %s | %s | %s | %s / %s | %.2f | %d | %d | %.1fs | %.0f MiB |\n", res.kind, r(res.phase1), r(res.allReady),
			r(res.p50), r(res.p99), res.writes, res.conflicts, res.doubles, res.cpu.Seconds(), float64(res.rssKiB)/1024)
	}
	for _, res := range results {
		if res.restart != nil {
			fmt.Printf("restart (%s): start → one new selector ready %s, CPU %.1fs, peak RSS %.0f MiB\n", res.kind,
				r(res.restart.untilAdopted), res.restart.cpu.Seconds(), float64(res.restart.rssKiB)/1024)
		}
	}
	if len(results) == 2 && results[0].allReady > 0 {
		fmt.Printf("%s / %s: all ready %.2f×, p50 %.2f×\n", results[1].kind, results[0].kind,
			results[1].allReady.Seconds()/results[0].allReady.Seconds(), results[1].p50.Seconds()/results[0].p50.Seconds())
	}
}

// watcher sees every inventory and selector event: when each selector first
// became ready, and any double claim (an inventory claimed by two selectors
// over the run, or a selector holding two inventories; the benchmark never
// releases, so either is a broken invariant).
type watcher struct {
	mu      sync.Mutex
	start   time.Time
	readyAt map[types.UID]time.Duration
	claimer map[string]types.UID // inventory → first claiming selector
	held    map[types.UID]string // selector → first inventory
	broken  map[string]bool      // inventories or selectors involved in a double claim
}

func newWatcher(inventories, selectors cache.SharedIndexInformer) *watcher {
	w := &watcher{readyAt: map[types.UID]time.Duration{}, claimer: map[string]types.UID{}, held: map[types.UID]string{}, broken: map[string]bool{}}
	_, _ = inventories.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.inventory,
		UpdateFunc: func(_, obj interface{}) { w.inventory(obj) },
	})
	_, _ = selectors.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.selector,
		UpdateFunc: func(_, obj interface{}) { w.selector(obj) },
	})
	return w
}

func (w *watcher) startClock(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.start = t
	w.readyAt = map[types.UID]time.Duration{}
}

func (w *watcher) inventory(obj interface{}) {
	mi, ok := obj.(*elementalv1.MachineInventory)
	if !ok {
		return
	}
	c, ok := inventory.ClaimOf(mi)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if uid, seen := w.claimer[mi.Name]; seen && uid != c.UID {
		w.broken["inventory "+mi.Name] = true
	}
	if name, seen := w.held[c.UID]; seen && name != mi.Name {
		w.broken["selector "+string(c.UID)] = true
	}
	if _, seen := w.claimer[mi.Name]; !seen {
		w.claimer[mi.Name] = c.UID
	}
	if _, seen := w.held[c.UID]; !seen {
		w.held[c.UID] = mi.Name
	}
}

func (w *watcher) selector(obj interface{}) {
	mis, ok := obj.(*elementalv1.MachineInventorySelector)
	if !ok || !mis.Status.Ready {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, seen := w.readyAt[mis.UID]; !seen && !w.start.IsZero() {
		w.readyAt[mis.UID] = time.Since(w.start)
	}
}

func (w *watcher) latency(q float64) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.readyAt) == 0 {
		return 0
	}
	all := make([]time.Duration, 0, len(w.readyAt))
	for _, d := range w.readyAt {
		all = append(all, d)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all[min(len(all)-1, int(q*float64(len(all))))]
}

func (w *watcher) doubles() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.broken)
}

// measureRestart starts the controller again with every object present and
// one new Machine waiting, and measures how long until that selector is
// ready: cache sync, the first pass over everything, one adoption.
func measureRestart(ctx context.Context, launch func() (*operatorProcess, error), rancher *testenv.SimulatedRancher,
	selectors elementalctl.MachineInventorySelectorCache, ns string, nInv, nSel int) (*restartResult, error) {
	if nInv <= nSel {
		return nil, fmt.Errorf("-restart needs a free inventory: more inventories than selectors")
	}
	probe, err := rancher.CreateMachine(ctx, ns, "restart-probe", testenv.MachineOptions{
		Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}},
		Script:   "#!/bin/sh\necho bootstrap\n",
	})
	if err != nil {
		return nil, err
	}
	fmt.Printf("restarting with %d inventories and %d selectors present, one new\n", nInv, nSel+1)
	start := time.Now()
	op, err := launch()
	if err != nil {
		return nil, err
	}
	defer op.stop()
	if err := waitFor(10*time.Minute, func() (bool, string) {
		mis, err := selectors.Get(ns, probe.Name)
		return err == nil && mis.Status.Ready, "probe selector not ready"
	}); err != nil {
		return nil, err
	}
	out := &restartResult{untilAdopted: time.Since(start)}
	out.cpu, out.rssKiB = op.usage()
	return out, nil
}

// startFloor runs this benchmark's own binary as the floor controller, a
// separate process like the operator, so CPU, memory and restarts compare.
func startFloor(binary, kubeconfig, ns string) (*operatorProcess, error) {
	cmd := exec.Command(binary, "-floor-child", "-floor-kubeconfig", kubeconfig, "-floor-namespace", ns)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &operatorProcess{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func floorMain() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", *floorKubeconfig)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// The operator's default --workers.
	if err := runFloor(ctx, cfg, *floorNamespace, 20); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
