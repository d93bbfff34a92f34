// Command bench measures adoption against the real apiserver: N inventories,
// M selectors with Machines and bootstrap Secrets (simulated Rancher), plans
// answered by simulated agents, the operator as a separate process. It
// reports time until every selector is ready, operator API writes per
// adoption (apiserver_request_total minus the simulators' own writes),
// conflicts, operator CPU and peak RSS. `scripts/bench` runs it.
//
// -controller floor runs instead the minimal controller of floor.go (the
// contract's writes, no safety), and -controller both runs the floor, then
// the operator, each on a fresh apiserver, and prints a comparison table.
// -restart also measures a restart with everything present.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var (
	progress    = flag.Bool("progress", false, "print progress every 2s")
	dumpMetrics = flag.Bool("metrics", false, "print the operator's handler metrics at the end")
	goroutines  = flag.String("goroutines", "", "write the operator's goroutine dump 15s into the measured phase to this file")
	idle        = flag.Duration("idle", 0, "after the run, measure the operator's CPU and handler runs over this long with nothing left to do")
	profile     = flag.String("profile", "", "write CPU profiles of kube-apiserver and the operator over the measured phase to <prefix>.apiserver.pprof and <prefix>.operator.pprof")
	dump        = flag.String("dump", "", "write one adopted inventory and its selector, as the API server returns them, to <prefix>.mi.json and <prefix>.mis.json")
	profileSecs = flag.Int("profile-seconds", 10, "length of the -profile CPU profiles")
	controllerF = flag.String("controller", "operator", "what adopts: operator, floor (the minimal controller of floor.go) or both (each on a fresh apiserver, then a comparison table)")
	restart     = flag.Bool("restart", false, "after the run, restart the controller with everything present and measure how long until it adopts one new selector (needs more inventories than selectors)")
	metricsAddr string
)

func main() {
	inventoriesN := flag.Int("inventories", 1000, "inventories in the pool")
	selectorsN := flag.Int("selectors", 1000, "selectors (Machines) to adopt")
	flag.Parse()
	logrus.SetLevel(logrus.WarnLevel)
	ctrllog.SetLogger(logr.Discard()) // envtest's
	if *floorChild {
		if err := floorMain(); err != nil {
			fmt.Fprintln(os.Stderr, "bench floor:", err)
			os.Exit(1)
		}
		return
	}
	var kinds []string
	switch *controllerF {
	case "operator", "floor":
		kinds = []string{*controllerF}
	case "both":
		kinds = []string{"floor", "operator"}
	default:
		fmt.Fprintln(os.Stderr, "bench: -controller must be operator, floor or both")
		os.Exit(2)
	}
	var results []result
	for _, kind := range kinds {
		fmt.Printf("=== %s\n", kind)
		res, err := run(kind, *inventoriesN, *selectorsN)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", kind+":", err)
			os.Exit(1)
		}
		results = append(results, res)
	}
	printTable(results)
}

func run(kind string, nInv, nSel int) (res result, err error) {
	res.kind, res.adoptions = kind, min(nInv, nSel)
	ctx := context.Background()
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		return res, err
	}
	defer func() { _ = env.Stop() }()
	dir, err := os.MkdirTemp("", "elemental-bench-")
	if err != nil {
		return res, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	binary := filepath.Join(dir, "elemental-operator")
	if kind == "floor" {
		if binary, err = os.Executable(); err != nil {
			return res, err
		}
	} else if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		return res, fmt.Errorf("building the operator: %v\n%s", err, out)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		return res, err
	}

	// Everything the simulators write is counted, to subtract it later.
	simCfg, simWrites := testenv.CountWrites(env.Config)
	simClient := kubernetes.NewForConfigOrDie(simCfg)
	ns, err := env.NewNamespace(ctx, "bench")
	if err != nil {
		return res, err
	}
	launch := func() (*operatorProcess, error) {
		if kind == "floor" {
			return startFloor(binary, kubeconfig, ns)
		}
		return startOperator(binary, kubeconfig, ns)
	}
	agentCtx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	agents := testenv.RunSimulatedAgents(agentCtx, simClient, ns, 16)
	rancher, err := testenv.NewSimulatedRancher(simCfg)
	if err != nil {
		return res, err
	}
	f, err := elementalctl.NewFactoryFromConfig(simCfg)
	if err != nil {
		return res, err
	}
	inventories, selectors := f.Elemental().V1beta1().MachineInventory(), f.Elemental().V1beta1().MachineInventorySelector()
	// Observe through watches: polling LISTs of thousands of objects would load
	// the apiserver more than the operator does.
	invCache, misCache := inventories.Cache(), selectors.Cache()
	watch := newWatcher(inventories.Informer(), selectors.Informer())
	if err := f.Start(ctx, 1); err != nil {
		return res, err
	}
	if err := f.Sync(ctx); err != nil {
		return res, err
	}

	op, err := launch()
	if err != nil {
		return res, err
	}
	fmt.Printf("creating %d inventories (as the registration server would) and waiting for their agents' ack\n", nInv)
	phase1 := time.Now()
	if err := testenv.Parallel(nInv, 32, func(i int) error {
		_, err := inventories.Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("host-%05d", i), Labels: spreadLabels(i, map[string]string{"element": "fire", "rack": strconv.Itoa(i % 10)}),
			Finalizers: []string{elementalv1.MachineInventoryFinalizer},
		}})
		return err
	}); err != nil {
		return res, err
	}
	if err := waitFor(10*time.Minute+time.Duration(nInv)*100*time.Millisecond, func() (bool, string) {
		list, err := invCache.List(ns, labels.Everything())
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, mi := range list {
			if mi.Status.Phase == "Available" {
				n++
			}
		}
		return n == nInv, fmt.Sprintf("%d/%d available", n, nInv)
	}); err != nil {
		return res, err
	}
	res.phase1 = time.Since(phase1)
	op.stop()

	fmt.Printf("creating %d Machines + bootstrap Secrets + selectors with the operator stopped\n", nSel)
	if err := testenv.Parallel(nSel, 32, func(i int) error {
		_, err := rancher.CreateMachine(ctx, ns, fmt.Sprintf("m-%05d", i), testenv.MachineOptions{
			Selector:       elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}},
			Script:         "#!/bin/sh\necho bootstrap\n",
			TopologySpread: spreadConstraint(),
		})
		return err
	}); err != nil {
		return res, err
	}

	before, err := apiserverWrites(env)
	if err != nil {
		return res, err
	}
	simBefore := simWrites.Total("")
	apiBefore, etcdBefore := controlPlaneCPU()
	selfBefore, _ := procCPU(os.Getpid())
	answeredBefore := agents.Answered()
	start := time.Now()
	watch.startClock(start)
	op, err = launch()
	if err != nil {
		return res, err
	}
	want := nSel
	if nInv < want {
		want = nInv
	}
	profiled := startProfiles(env)
	if err := waitFor(15*time.Minute+time.Duration(nSel)*100*time.Millisecond, func() (bool, string) {
		list, err := misCache.List(ns, labels.Everything())
		if err != nil {
			return false, err.Error()
		}
		n, recorded, planned := 0, 0, 0
		for _, mis := range list {
			if mis.Status.Ready {
				n++
			}
			if mis.Status.MachineInventoryRef != nil {
				recorded++
			}
			if mis.Status.BootstrapPlanChecksum != "" {
				planned++
			}
		}
		claimed := 0
		if *progress {
			invs, _ := invCache.List(ns, labels.Everything())
			for _, mi := range invs {
				if len(mi.OwnerReferences) > 0 {
					claimed++
				}
			}
		}
		return n == want, fmt.Sprintf("%d/%d selectors ready (%d claimed, %d recorded, %d with plan in status, %d bootstrap plans, %d acked)", n, want, claimed, recorded, planned, agents.Plans("bootstrap"), agents.Answered()-answeredBefore)
	}); err != nil {
		return res, err
	}
	elapsed := time.Since(start)
	// The adoption is done when its inventories say so too: their status
	// write follows the selector's. The floor writes no such status.
	if err := waitFor(2*time.Minute, func() (bool, string) {
		list, err := invCache.List(ns, labels.Everything())
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, mi := range list {
			if mi.Status.Phase == "Provisioned" {
				n++
			}
		}
		return n == want || kind == "floor", fmt.Sprintf("%d/%d inventories provisioned", n, want)
	}); err != nil {
		return res, err
	}
	settled := time.Since(start)
	if *dump != "" {
		dumpOne(invCache.List, misCache.List, ns)
	}
	cpu, rss := op.usage()
	apiCPU, etcdCPU := controlPlaneCPU()
	apiCPU, etcdCPU = apiCPU-apiBefore, etcdCPU-etcdBefore
	selfCPU, _ := procCPU(os.Getpid())
	selfCPU -= selfBefore
	profiled()
	if *dumpMetrics {
		if out, err := exec.Command("curl", "-s", "http://"+metricsAddr+"/metrics").Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "lasso_controller_total_handler_execution") || strings.HasPrefix(line, "lasso_controller_reconcile_time_seconds_sum") || strings.HasPrefix(line, "workqueue_depth") {
					fmt.Println("  " + line)
				}
			}
		}
	}
	if *idle > 0 {
		idleReport(op, *idle)
	}
	time.Sleep(time.Second) // let any stray write land
	after, err := apiserverWrites(env)
	if err != nil {
		return res, err
	}
	simDelta := simWrites.Total("") - simBefore
	op.stop()
	if *restart {
		if res.restart, err = measureRestart(ctx, launch, rancher, misCache, ns, nInv, nSel); err != nil {
			return res, err
		}
	}

	total, conflicts, byResource := diff(before, after)
	fmt.Printf("  apiserver reads by the operator and the simulators: %v\n", reads(before, after))
	opWrites := total - simDelta
	fmt.Printf("\nresults: %d inventories, %d selectors, %d adoptions\n", nInv, nSel, want)
	fmt.Printf("  time until all selectors ready (operator start → last ready): %s\n", elapsed.Round(10*time.Millisecond))
	fmt.Printf("  time until all inventories provisioned: %s\n", settled.Round(10*time.Millisecond))
	fmt.Printf("  operator API writes: %d total, %.2f per adoption (events: %d, leases: %d)\n",
		opWrites, float64(opWrites)/float64(want), byResource["events"], byResource["leases"])
	fmt.Printf("  operator writes per adoption without events and leases: %.2f\n",
		float64(opWrites-byResource["events"]-byResource["leases"])/float64(want))
	fmt.Printf("  simulated agents' writes (subtracted): %d\n", simDelta)
	fmt.Printf("  conflicts (HTTP 409, all clients): %d\n", conflicts)
	fmt.Printf("  operator CPU: %.2fs, peak RSS: %.1f MiB\n", cpu.Seconds(), float64(rss)/1024)
	fmt.Printf("  kube-apiserver + etcd CPU: %.2fs (%.2fs + %.2fs); this benchmark (simulated agents, observers): %.2fs\n",
		(apiCPU + etcdCPU).Seconds(), apiCPU.Seconds(), etcdCPU.Seconds(), selfCPU.Seconds())
	fmt.Printf("  apiserver writes by resource (all clients): %v\n", byResource)
	if invs, err := invCache.List(ns, labels.Everything()); err == nil {
		spreadReport(invs)
	}
	res.allReady, res.settled = elapsed, settled
	res.p50, res.p99 = watch.latency(0.50), watch.latency(0.99)
	res.writes = float64(opWrites-byResource["events"]-byResource["leases"]) / float64(want)
	res.conflicts = conflicts
	res.doubles = watch.doubles()
	res.cpu, res.rssKiB = cpu, rss
	fmt.Printf("  phase 1 (inventories available): %s; ready latency p50 %s, p99 %s; double claims seen: %d\n",
		res.phase1.Round(10*time.Millisecond), res.p50.Round(10*time.Millisecond), res.p99.Round(10*time.Millisecond), res.doubles)
	return res, nil
}

// dumpOne writes one provisioned inventory and its selector as JSON.
func dumpOne(inventories func(string, labels.Selector) ([]*elementalv1.MachineInventory, error),
	selectors func(string, labels.Selector) ([]*elementalv1.MachineInventorySelector, error), ns string) {
	invs, _ := inventories(ns, labels.Everything())
	sels, _ := selectors(ns, labels.Everything())
	for _, mi := range invs {
		for _, mis := range sels {
			if len(mi.OwnerReferences) > 0 && mi.OwnerReferences[0].UID == mis.UID {
				for what, obj := range map[string]interface{}{"mi": mi, "mis": mis} {
					out, _ := json.MarshalIndent(obj, "", "  ")
					_ = os.WriteFile(*dump+"."+what+".json", out, 0o644)
				}
				return
			}
		}
	}
}

// startProfiles fetches CPU profiles of kube-apiserver (its /debug/pprof,
// on by default) and the operator (--profiling) in the background; the
// returned func waits for them.
func startProfiles(env *testenv.Env) func() {
	if *profile == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	fetch := func(what string, get func() ([]byte, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := get()
			if err == nil {
				err = os.WriteFile(*profile+"."+what+".pprof", out, 0o644)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: %s profile: %v\n", what, err)
			}
		}()
	}
	secs := strconv.Itoa(*profileSecs)
	fetch("apiserver", func() ([]byte, error) {
		return env.Client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", secs).
			Timeout(time.Duration(*profileSecs+30) * time.Second).DoRaw(context.Background())
	})
	// The operator's metrics listener comes up a moment after its start.
	fetch("operator", func() ([]byte, error) {
		var err error
		for i := 0; i < 50; i++ {
			var out []byte
			if out, err = exec.Command("curl", "-sf", "http://"+metricsAddr+"/debug/pprof/profile?seconds="+secs).Output(); err == nil {
				return out, nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil, err
	})
	return wg.Wait
}

type operatorProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startOperator(binary, kubeconfig, ns string) (*operatorProcess, error) {
	health, err := testenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	if metricsAddr, err = testenv.FreeAddr(); err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "--kubeconfig", kubeconfig, "--namespace", ns, "--health-addr", health,
		"--metrics-addr", metricsAddr, "--registration-addr", "", "--registration-mode", "direct", "--install-crds=false", "--create-namespace=false", "--profiling", "--debug",
		// The stopped operator released the lease: a new one takes it at once,
		// and a loaded 2-core machine must not cost it the lease mid-run.
		"--leader-elect-lease-duration", "15s", "--leader-elect-renew-deadline", "10s", "--leader-elect-retry-period", "500ms")
	logFile, err := os.CreateTemp("", "elemental-bench-operator-*.log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &operatorProcess{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *operatorProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// usage reads CPU time and peak RSS (KiB) from /proc.
func (p *operatorProcess) usage() (time.Duration, int) {
	pid := p.cmd.Process.Pid
	cpu, _ := procCPU(pid)
	rss := 0
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			rss, _ = strconv.Atoi(strings.Fields(line)[1])
		}
	}
	return cpu, rss
}

// procCPU reads a process's CPU time and parent from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, int) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// pid (comm) state ppid ... utime stime: comm may hold spaces, cut at ')'.
	fields := strings.Fields(string(stat)[strings.LastIndexByte(string(stat), ')')+1:])
	if len(fields) < 13 {
		return 0, 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond, ppid // USER_HZ = 100
}

// controlPlaneCPU is the CPU time of this process's kube-apiserver and etcd.
func controlPlaneCPU() (apiserver, etcd time.Duration) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cpu, ppid := procCPU(pid)
		if ppid != os.Getpid() {
			continue
		}
		switch comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); {
		case strings.HasPrefix(string(comm), "kube-apiserver"):
			apiserver += cpu
		case strings.HasPrefix(string(comm), "etcd"):
			etcd += cpu
		}
	}
	return apiserver, etcd
}

func waitFor(timeout time.Duration, check func() (bool, string)) error {
	start := time.Now()
	deadline := start.Add(timeout)
	var last string
	lastPrint := start
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = check(); ok {
			return nil
		}
		if *goroutines != "" && time.Since(start) > 16*time.Second && metricsAddr != "" {
			if out, err := exec.Command("curl", "-s", "http://"+metricsAddr+"/debug/pprof/goroutine?debug=1").Output(); err == nil {
				_ = os.WriteFile(*goroutines, out, 0o644)
			}
			if out, err := exec.Command("curl", "-s", "http://"+metricsAddr+"/metrics").Output(); err == nil {
				_ = os.WriteFile(*goroutines+".metrics", out, 0o644)
			}
			*goroutines = ""
		}
		if *progress && time.Since(lastPrint) > 2*time.Second {
			fmt.Printf("  %6.1fs  %s\n", time.Since(start).Seconds(), last)
			lastPrint = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out: %s", last)
}

type sample map[string]float64

// apiserverWrites reads apiserver_request_total, keyed by "verb resource code";
// GETs and LISTs are keyed "read VERB resource code" (see reads).
func apiserverWrites(env *testenv.Env) (sample, error) {
	raw, err := env.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return nil, err
	}
	out := sample{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		labels := parseLabels(line[len("apiserver_request_total{"):strings.LastIndexByte(line, '}')])
		switch labels["verb"] {
		case "POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE":
		case "GET", "LIST":
			// Reads are kept apart: "read GET secrets" is no write.
			labels["verb"] = "read " + labels["verb"]
		default:
			continue
		}
		res := labels["resource"]
		if labels["subresource"] != "" {
			res += "/" + labels["subresource"]
		}
		v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		out[labels["verb"]+" "+res+" "+labels["code"]] += v
	}
	return out, sc.Err()
}

func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

func diff(before, after sample) (total, conflicts int, byResource map[string]int) {
	byResource = map[string]int{}
	for k, v := range after {
		d := int(v - before[k])
		if d == 0 || strings.HasPrefix(k, "read ") {
			continue
		}
		parts := strings.Fields(k)
		total += d
		byResource[strings.SplitN(parts[1], "/", 2)[0]] += d
		if parts[2] == "409" {
			conflicts += d
		}
	}
	return total, conflicts, byResource
}

// idleReport measures what the operator does once every adoption is done:
// CPU and handler runs should stay near zero however large the fleet.
func idleReport(op *operatorProcess, d time.Duration) {
	runs := func() map[string]float64 {
		out, _ := exec.Command("curl", "-s", "http://"+metricsAddr+"/metrics").Output()
		byHandler := map[string]float64{}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "lasso_controller_total_handler_execution{") {
				v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				byHandler[parseLabels(line[len("lasso_controller_total_handler_execution{"):strings.LastIndexByte(line, '}')])["handler_name"]] += v
			}
		}
		return byHandler
	}
	cpu0, _ := op.usage()
	runs0 := runs()
	time.Sleep(d)
	cpu1, _ := op.usage()
	total, busy := 0.0, []string{}
	for h, n := range runs() {
		if n -= runs0[h]; n > 0 {
			total += n
			busy = append(busy, fmt.Sprintf("%s %.0f", h, n))
		}
	}
	sort.Strings(busy)
	fmt.Printf("  idle for %s after the run: operator CPU %.2fs, handler runs %.0f %v\n", d, (cpu1 - cpu0).Seconds(), total, busy)
}

// reads sums the GETs and LISTs between two samples by "VERB resource".
func reads(before, after sample) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := int(v - before[k]); d != 0 && strings.HasPrefix(k, "read ") {
			parts := strings.Fields(k)
			out[parts[1]+" "+parts[2]] += d
		}
	}
	return out
}
