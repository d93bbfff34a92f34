package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpuSeconds is the CPU time (user+system) used so far by this process and
// by its descendants that are still running, keyed by command name ("self"
// for this process): the benchmark reports how the cores were shared between
// the server, kube-apiserver and etcd.
func cpuSeconds() map[string]float64 {
	out := map[string]float64{}
	self := os.Getpid()
	parents := map[int]int{}
	comms := map[int]string{}
	ticks := map[int]float64{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(s[closing+1:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		parents[pid], comms[pid], ticks[pid] = ppid, s[open+1:closing], utime+stime
	}
	const hz = 100 // USER_HZ on Linux
	for pid, t := range ticks {
		name := ""
		for p := pid; p > 1; p = parents[p] {
			if p == self {
				name = comms[pid]
				if pid == self {
					name = "self"
				}
				break
			}
		}
		if name != "" {
			out[name] += t / hz
		}
	}
	return out
}

// profiler captures, when BENCH_PROFILE names a directory, this process's CPU
// profile (server, in-process controllers and benchmark clients) and
// kube-apiserver's, over the measured window.
type profiler struct {
	dir       string
	cpuBefore map[string]float64
	reqBefore map[string]float64
	apiDone   chan error
	cancel    context.CancelFunc
	self      *os.File
}

func startProfiler(b *testing.B, window time.Duration) *profiler {
	p := &profiler{dir: os.Getenv("BENCH_PROFILE"), cpuBefore: cpuSeconds(), reqBefore: apiRequests()}
	if p.dir == "" {
		return p
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(p.dir, "server.pprof"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	p.self = f
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.apiDone = cancel, make(chan error, 1)
	go func() {
		// kube-apiserver serves pprof to system:masters (the test admin).
		seconds := int(window / time.Second)
		raw, err := env.Client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
			Param("seconds", strconv.Itoa(seconds)).Timeout(window + 30*time.Second).DoRaw(ctx)
		if err == nil {
			err = os.WriteFile(filepath.Join(p.dir, "apiserver.pprof"), raw, 0o644)
		}
		p.apiDone <- err
	}()
	return p
}

// stop ends the profiles.
func (p *profiler) stop(b *testing.B) {
	if p.self == nil {
		return
	}
	pprof.StopCPUProfile()
	_ = p.self.Close()
	if err := <-p.apiDone; err != nil {
		b.Logf("apiserver profile: %v", err)
	}
	p.cancel()
	fmt.Printf("profiles in %s (server.pprof, apiserver.pprof)\n", p.dir)
}

// report prints the CPU seconds used per process since the start, and with
// requests the API requests by verb and resource.
func (p *profiler) report(label string, elapsed time.Duration, hosts int, requests bool) {
	after := cpuSeconds()
	total := 0.0
	for _, name := range []string{"self", "kube-apiserver", "etcd"} {
		d := after[name] - p.cpuBefore[name]
		total += d
		fmt.Printf("cpu %-8s %-15s %6.2fs  (%.0f%% of one core, %.1f ms/host)\n", label, name, d, 100*d/elapsed.Seconds(), 1000*d/float64(hosts))
	}
	fmt.Printf("cpu %-8s %-15s %6.2fs  (%.0f%% of one core, %.1f ms/host)\n", label, "total", total, 100*total/elapsed.Seconds(), 1000*total/float64(hosts))
	if !requests {
		return
	}
	reqAfter := apiRequests()
	keys := make([]string, 0, len(reqAfter))
	for k := range reqAfter {
		if reqAfter[k]-p.reqBefore[k] >= 1 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		d := reqAfter[k] - p.reqBefore[k]
		fmt.Printf("apiserver %-40s %6.0f  (%.2f/host)\n", k, d, d/float64(hosts))
	}
}

// apiRequests is kube-apiserver's apiserver_request_total by "VERB
// resource[/subresource]", from every client (server, controllers, benchmark).
func apiRequests() map[string]float64 {
	out := map[string]float64{}
	raw, err := env.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(raw), "\n") {
		metric, rest, ok := strings.Cut(line, "{")
		if !ok || (metric != "apiserver_request_total" && metric != "apiserver_terminated_watchers_total") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		labels := map[string]string{}
		if metric == "apiserver_terminated_watchers_total" {
			labels["verb"] = "TERMINATED-WATCH"
		}
		for _, kv := range strings.Split(rest[:strings.LastIndexByte(rest, '}')], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		key := labels["verb"] + " " + labels["resource"]
		if labels["subresource"] != "" {
			key += "/" + labels["subresource"]
		}
		out[key] += v
	}
	return out
}
