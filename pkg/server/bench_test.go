package server_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
)

// BenchmarkRegistration registers BENCH_HOSTS (default 1000) new PLAIN hosts
// from BENCH_CLIENTS (default 50) concurrent clients against the real API
// server, once (run with -benchtime=1x), and reports throughput, latency
// percentiles, the server's writes per host (path-writes/host: stored
// objects; a TokenRequest is not one, Events are written in the background),
// how long until the controller gave every host its access and plan Secret
// (settled-s), the CPU time of this process, kube-apiserver and etcd, and the
// API requests of every client. With BENCH_PROFILE=<dir> it also writes CPU
// profiles of this process and kube-apiserver (BENCH_PROFILE_SECONDS, 5).
// With BENCH_REREGISTER=1 the same hosts then register again, all of them
// known (what Elemental OS's periodic re-registration does), and the
// re-registration figures are reported with the prefix re-.
func BenchmarkRegistration(b *testing.B) {
	hosts, clients := envInt("BENCH_HOSTS", 1000), envInt("BENCH_CLIENTS", 50)
	ns, err := env.NewNamespace(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	t := &testing.T{}
	spec := elementalv1.MachineRegistrationSpec{MachineName: "b-${Random/Hex/10}"}
	spec.Config.Elemental.Registration.Auth = "mac"
	mr := newRegistration(t, ns, "bench", spec)
	if t.Failed() {
		b.Fatal("registration not ready")
	}
	directFailures := 0
	if rancher != nil {
		// The same registration on the direct listener first, in the same
		// run, as the baseline for the tunnel's cost.
		direct := burst(directURL+"/elemental/registration/"+mr.Status.RegistrationToken, srv.CACert(), hosts, clients, 1<<20)
		direct.report(b, "direct-")
		fmt.Printf("direct: %.1f registrations/s, p50 %s, p99 %s, %d failures, %s\n", direct.rate(), direct.pct(50), direct.pct(99), direct.failures, direct.cpu(hosts))
		directFailures = direct.failures
		waitSettled(b, ns, hosts-direct.failures, time.Now())
	}
	before := writes.Snapshot()
	b.ResetTimer()
	prof := startProfiler(b, time.Duration(envInt("BENCH_PROFILE_SECONDS", 5))*time.Second)
	began := time.Now()
	res := burst(mr.Status.RegistrationURL, hostCA, hosts, clients, 0)
	elapsed := res.elapsed
	b.StopTimer()
	if rancher != nil {
		fmt.Printf("via Rancher's tunnel: %.1f registrations/s, p50 %s, p99 %s, %d failures, %s\n", res.rate(), res.pct(50), res.pct(99), res.failures, res.cpu(hosts))
	}
	after := writes.Snapshot()
	prof.report("register", elapsed, hosts, false)
	// The rest of onboarding happens off the registration path: wait until
	// every host has its Role, RoleBinding and plan Secret.
	// A failed registration (refused under load) has no inventory to settle.
	registered := hosts*hostsPhases() - res.failures - directFailures
	settled := waitSettled(b, ns, registered, began)
	prof.stop(b)
	prof.report("settled", time.Since(began), hosts, true)
	d := diff(before, after)
	res.report(b, "")
	b.ReportMetric(float64(d["POST machineinventories"]+d["PATCH machineinventories"]+d["PUT machineinventories"])/float64(hosts), "mi-writes/host")
	b.ReportMetric(float64(pathWrites(d))/float64(hosts), "path-writes/host")
	b.ReportMetric(settled.Seconds(), "settled-s")
	b.ReportMetric(float64(res.failures), "failures")
	printWrites(d, hosts, "")
	if envInt("BENCH_REREGISTER", 0) > 0 {
		before := writes.Snapshot()
		again := burst(mr.Status.RegistrationURL, hostCA, hosts, clients, 0)
		d := diff(before, writes.Snapshot())
		again.report(b, "re-")
		b.ReportMetric(float64(again.failures), "re-failures")
		b.ReportMetric(float64(pathWrites(d))/float64(hosts), "re-path-writes/host")
		fmt.Printf("re-registration of %d known hosts: %.1f registrations/s, p50 %s, p99 %s, %d failures, %s\n",
			hosts, again.rate(), again.pct(50), again.pct(99), again.failures, again.cpu(hosts))
		printWrites(d, hosts, "re-")
	}
}

// pathWrites counts the stored objects written: a TokenRequest is not one,
// Events are written in the background.
func pathWrites(d map[string]int) int {
	n := 0
	for k, v := range d {
		if k != "POST serviceaccounts/token" && k != "POST events" {
			n += v
		}
	}
	return n
}

func printWrites(d map[string]int, hosts int, prefix string) {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%swrites %-40s %6d  (%.2f/host)\n", prefix, k, d[k], float64(d[k])/float64(hosts))
	}
}

// waitSettled waits until every host has its Role, RoleBinding and plan
// Secret (the controller creates the Secret last) and returns the time since
// began.
func waitSettled(b *testing.B, ns string, hosts int, began time.Time) time.Duration {
	ctx := context.Background()
	deadline := time.Now().Add(max(5*time.Minute, time.Duration(hosts)*60*time.Millisecond))
	// From the watch cache, twice a second: cheap enough not to matter.
	opts := metav1.ListOptions{ResourceVersion: "0"}
	for {
		secrets, err := env.Client.CoreV1().Secrets(ns).List(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		// Only plan Secrets (the namespace may hold others).
		plansMade := 0
		for i := range secrets.Items {
			if secrets.Items[i].Type == elementalv1.PlanSecretType {
				plansMade++
			}
		}
		if plansMade >= hosts {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not settled: %d plan secrets", plansMade)
		}
		time.Sleep(500 * time.Millisecond)
	}
	settled := time.Since(began)
	rbs, err1 := env.Client.RbacV1().RoleBindings(ns).List(ctx, opts)
	roles, err2 := env.Client.RbacV1().Roles(ns).List(ctx, opts)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatal(err)
	}
	if len(rbs.Items) < hosts || len(roles.Items) < hosts {
		b.Fatalf("plan Secrets without access: %d roles, %d rolebindings", len(roles.Items), len(rbs.Items))
	}
	return settled
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// hostsPhases is how many bursts of hosts a run registers.
func hostsPhases() int {
	if rancher != nil {
		return 2
	}
	return 1
}

// burstResult is one burst of registrations.
type burstResult struct {
	lat      []time.Duration // sorted
	elapsed  time.Duration
	failures int
	// cpuSelf and cpuAll are CPU seconds of this process (server, clients,
	// simulated Rancher) and of it plus kube-apiserver and etcd.
	cpuSelf, cpuAll float64
}

func (r burstResult) cpu(hosts int) string {
	return fmt.Sprintf("CPU per host %.1f ms in this process (server, clients, Rancher), %.1f ms with kube-apiserver and etcd",
		1000*r.cpuSelf/float64(hosts), 1000*r.cpuAll/float64(hosts))
}

func (r burstResult) rate() float64 { return float64(len(r.lat)) / r.elapsed.Seconds() }

func (r burstResult) pct(p int) time.Duration {
	return r.lat[len(r.lat)*p/100].Round(time.Millisecond)
}

func (r burstResult) report(b *testing.B, prefix string) {
	b.ReportMetric(r.rate(), prefix+"registrations/s")
	b.ReportMetric(float64(r.pct(50).Microseconds())/1000, prefix+"p50-ms")
	b.ReportMetric(float64(r.pct(99).Microseconds())/1000, prefix+"p99-ms")
}

// burst registers hosts new PLAIN hosts (MACs from offset) from clients
// concurrent clients at url.
func burst(url, ca string, hosts, clients, offset int) burstResult {
	lat := make([]time.Duration, hosts)
	var failures int
	reasons := map[string]int{}
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	before := cpuSeconds()
	began := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t0 := time.Now()
				n := i + offset
				_, err := client.Register(context.Background(), client.Request{
					URL: url, CACert: ca,
					Authorization: client.PlainAuth(fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", n>>24&255, n>>16&255, n>>8&255, n&255)),
					Annotations:   map[string]string{"auth": "mac"},
				})
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					failures++
					reasons[err.Error()]++
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < hosts; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	res := burstResult{lat: lat, elapsed: time.Since(began), failures: failures}
	for reason, n := range reasons {
		fmt.Printf("failed %d times: %s\n", n, reason)
	}
	after := cpuSeconds()
	for k, v := range after {
		res.cpuAll += v - before[k]
	}
	res.cpuSelf = after["self"] - before["self"]
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	return res
}
