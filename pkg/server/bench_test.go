package server_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
)

// BenchmarkRegistration registers BENCH_HOSTS (default 1000) new PLAIN hosts
// from BENCH_CLIENTS (default 50) concurrent clients against the real API
// server, once (run with -benchtime=1x), and reports throughput, latency
// percentiles and inventory writes per host.
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
	before := writes.Snapshot()
	lat := make([]time.Duration, hosts)
	var failures int
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	b.ResetTimer()
	began := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t0 := time.Now()
				_, err := client.Register(context.Background(), client.Request{
					URL: mr.Status.RegistrationURL, CACert: srv.CACert(),
					Authorization: client.PlainAuth(fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", i>>24&255, i>>16&255, i>>8&255, i&255)),
					Annotations:   map[string]string{"auth": "mac"},
				})
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					failures++
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
	elapsed := time.Since(began)
	b.StopTimer()
	after := writes.Snapshot()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	d := diff(before, after)
	b.ReportMetric(float64(hosts)/elapsed.Seconds(), "registrations/s")
	b.ReportMetric(float64(lat[hosts/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[hosts*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(d["POST machineinventories"]+d["PATCH machineinventories"]+d["PUT machineinventories"])/float64(hosts), "mi-writes/host")
	b.ReportMetric(float64(failures), "failures")
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("writes %-40s %6d  (%.2f/host)\n", k, d[k], float64(d[k])/float64(hosts))
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
