package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
	"github.com/elemental-operator/elemental-operator/pkg/register/host"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// apiServiceName is the APIService the chart creates and the Secret it asks
// Rancher to fill (the operator's --apiservice-secret default).
const apiServiceName = "elemental-operator"

var (
	rancherServerOnce sync.Once
	rancherServer     *testenv.Rancher
	rancherServerErr  error
)

// simulatedRancherServer starts the simulated Rancher server on first use and
// keeps it for the whole run: it owns the cluster's Settings, so there is
// one per apiserver. Tests that leave registration disabled never start it.
func simulatedRancherServer(t *testing.T) *testenv.Rancher {
	t.Helper()
	rancherServerOnce.Do(func() {
		rancherServer, rancherServerErr = testenv.StartRancher(env.Config, testenv.RancherOptions{})
	})
	require.NoError(t, rancherServerErr)
	return rancherServer
}

func stopRancherServer() {
	if rancherServer != nil {
		rancherServer.Stop()
	}
}

// createAPIService creates the APIService the chart would, pointing Rancher
// at the Secret in the operator's namespace; it is deleted when the test ends.
func createAPIService(t *testing.T, operatorNamespace string) {
	t.Helper()
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	services := mf.Management().V3().APIService()
	_, err = services.Create(&mgmtv3.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: apiServiceName},
		Spec: mgmtv3.APIServiceSpec{
			SecretName: apiServiceName, SecretNamespace: operatorNamespace, PathPrefixes: []string{"/elemental/"},
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = services.Delete(apiServiceName, &metav1.DeleteOptions{}) })
}

// replica is an operator process in rancher mode, with its metrics endpoint
// on so the test can tell which replica served what.
type replica struct {
	*operatorProcess
	metricsAddr string
}

func startRancherModeReplica(t *testing.T, ns string) *replica {
	t.Helper()
	addr, err := testenv.FreeAddr()
	require.NoError(t, err)
	p := startOperator(t, ns, "--registration-mode", "rancher", "--metrics-addr", addr)
	return &replica{operatorProcess: p, metricsAddr: addr}
}

// served is the replica's elemental_operator_registrations_total for
// registered and reregistered hosts, or -1 when it cannot be scraped.
func (r *replica) served() int {
	resp, err := http.Get("http://" + r.metricsAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer func() { _ = resp.Body.Close() }()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "elemental_operator_registrations_total{") || strings.Contains(line, `result="failed"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			n += int(v)
		}
	}
	return n
}

// leaseHolder is the identity holding the operator's Lease ("" if none).
func leaseHolder(t *testing.T, ns string) string {
	t.Helper()
	lease, err := env.Client.CoordinationV1().Leases(ns).Get(context.Background(), operator.LeaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// holds says whether the replica logged the identity that holds the Lease.
func (r *replica) holds(identity string) bool {
	return identity != "" && strings.Contains(r.output(), "identity="+identity)
}

func waitSessions(t *testing.T, r *testenv.Rancher, n int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	require.NoError(t, r.WaitSessions(ctx, apiServiceName, n))
	return time.Since(start)
}

// registrationConfig is what an ISO builder does: a plain GET of the
// registration URL (through Rancher) returns the registration config hosts
// boot with, URL and CA included.
func registrationConfig(t *testing.T, r *testenv.Rancher, url string) host.Registration {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CAPEM)
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(url)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var cfg host.Config
	require.NoError(t, yaml.Unmarshal(body, &cfg), string(body))
	return cfg.Elemental.Registration
}

// simHost is one host registering with auth mac.
type simHost struct{ mac string }

func newSimHost(i int) simHost {
	return simHost{mac: fmt.Sprintf("52:54:00:e2:%02x:%02x", i/256, i%256)}
}

func (h simHost) hash() string {
	sum := sha256.Sum256([]byte(h.mac))
	return hex.EncodeToString(sum[:])
}

// attempt is one registration conversation of a host.
type attempt struct {
	host       int
	n          int // 1 for the first try
	start, end time.Time
	err        error
}

// register runs one conversation through Rancher and checks the reply
// points the host's agent at Rancher too.
func (h simHost) register(reg host.Registration, rancherURL string, update bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	payload, err := client.Register(ctx, client.Request{
		URL: reg.URL, CACert: reg.CACert, Authorization: client.PlainAuth(h.mac), Update: update,
		Smbios:      map[string]interface{}{"System Information": map[string]interface{}{"Manufacturer": "QEMU", "UUID": "uuid-" + h.mac}},
		SystemData:  map[string]interface{}{"CPU": map[string]interface{}{"TotalCores": "4"}},
		Annotations: map[string]string{"auth": "mac"},
	})
	if err != nil {
		return err
	}
	var cfg protocol.Config
	if err := protocol.DecodeConfig(payload, &cfg); err != nil {
		return err
	}
	if want := rancherURL + "/k8s/clusters/local"; cfg.Elemental.SystemAgent.URL != want {
		return fmt.Errorf("agent URL %q, want %q", cfg.Elemental.SystemAgent.URL, want)
	}
	return nil
}

// Registration retries like elemental-register: a failed conversation is
// tried again after a pause (5 s upstream; shorter here to keep the test
// short), a bounded number of times so a broken path fails the test.
const (
	registerAttempts = 5
	registerPause    = time.Second
)

func (h simHost) registerRetrying(i int, reg host.Registration, rancherURL string, update bool, record func(attempt)) error {
	var err error
	for n := 1; n <= registerAttempts; n++ {
		a := attempt{host: i, n: n, start: time.Now()}
		err = h.register(reg, rancherURL, update)
		a.end, a.err = time.Now(), err
		record(a)
		if err == nil {
			return nil
		}
		time.Sleep(registerPause) // a host's retry pause, as elemental-register waits between attempts
	}
	return fmt.Errorf("host %s: %d attempts failed, last: %w", h.mac, registerAttempts, err)
}

// signed prints a duration relative to an event, sign included.
func signed(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// waitInventories waits until the namespace holds exactly the given hosts'
// inventories, one each and none being deleted.
func waitInventories(t *testing.T, ns string, hosts int) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		list, err := inventories.List(ns, metav1.ListOptions{})
		if err != nil {
			return err
		}
		byHash := map[string]int{}
		deleting := 0
		for _, mi := range list.Items {
			byHash[mi.Spec.MachineHash]++
			if mi.DeletionTimestamp != nil {
				deleting++
			}
		}
		var missing, dup []string
		for i := 0; i < hosts; i++ {
			h := newSimHost(i)
			switch byHash[h.hash()] {
			case 0:
				missing = append(missing, h.mac)
			case 1:
			default:
				dup = append(dup, h.mac)
			}
		}
		if len(list.Items) != hosts || len(missing) > 0 || len(dup) > 0 || deleting > 0 {
			return fmt.Errorf("%d inventories for %d hosts: missing %v, duplicated %v, %d being deleted", len(list.Items), hosts, missing, dup, deleting)
		}
		return nil
	})
}

// Two replicas of the real binary serve registration through the simulated
// Rancher's APIService tunnel, each with its own session. Hosts register
// continuously at Rancher's URL while the leader (which also holds the
// oldest session, the one Rancher routes to) is SIGKILLed: every host ends up
// with exactly one inventory, the survivor serves what follows, and a fresh
// replica started after the survivor stops reconnects and serves.
func TestRegistrationThroughRancherSurvivesLeaderKill(t *testing.T) {
	r := simulatedRancherServer(t)
	ns := namespace(t)
	createAPIService(t, ns)

	// One at a time, so the first is both the leader and the oldest session.
	began := time.Now()
	first := startRancherModeReplica(t, ns)
	eventually(t, 30*time.Second, func() error {
		if !first.holds(leaseHolder(t, ns)) {
			return fmt.Errorf("lease held by %q", leaseHolder(t, ns))
		}
		return nil
	})
	waitSessions(t, r, 1, 30*time.Second)
	second := startRancherModeReplica(t, ns)
	waitSessions(t, r, 2, 30*time.Second)
	t.Logf("two replicas connected to Rancher %s after %s", r.URL, time.Since(began).Round(time.Millisecond))

	spec := elementalv1.MachineRegistrationSpec{
		MachineName:            "host-${Random/Hex/8}",
		MachineInventoryLabels: map[string]string{"element": "fire"},
	}
	spec.Config.Elemental.Registration.Auth = "mac"
	_, err := registrations.Create(&elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fire"}, Spec: spec})
	require.NoError(t, err)
	var mr *elementalv1.MachineRegistration
	eventually(t, 30*time.Second, func() error {
		mr, err = registrations.Get(ns, "fire", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(mr.Status.Conditions, elementalv1.ConditionReady) {
			return fmt.Errorf("not ready: %v", mr.Status.Conditions)
		}
		return nil
	})
	require.True(t, strings.HasPrefix(mr.Status.RegistrationURL, r.URL+"/elemental/registration/"), mr.Status.RegistrationURL)
	reg := registrationConfig(t, r, mr.Status.RegistrationURL)
	require.Equal(t, mr.Status.RegistrationURL, reg.URL)
	require.Equal(t, strings.TrimSpace(string(r.CAPEM)), strings.TrimSpace(reg.CACert), "hosts are given Rancher's cacerts")
	require.Equal(t, "mac", reg.Auth)

	// Phase 1: 60 hosts from 4 goroutines, the leader killed after 20.
	const hosts, workers, killAfter = 60, 4, 20
	var (
		mu       sync.Mutex
		attempts []attempt
		ok       atomic.Int32
	)
	record := func(a attempt) {
		mu.Lock()
		attempts = append(attempts, a)
		mu.Unlock()
		if a.err == nil {
			ok.Add(1)
		}
	}
	jobs := make(chan int)
	go func() {
		defer close(jobs)
		for i := 0; i < hosts; i++ {
			jobs <- i
		}
	}()
	errs := make(chan error, hosts)
	var wg sync.WaitGroup
	loadStart := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := newSimHost(i).registerRetrying(i, reg, r.URL, false, record); err != nil {
					errs <- err
				}
				time.Sleep(100 * time.Millisecond) // a steady stream, not one burst
			}
		}()
	}
	eventually(t, 30*time.Second, func() error {
		if n := ok.Load(); n < killAfter {
			return fmt.Errorf("%d hosts registered", n)
		}
		return nil
	})
	servedBefore := [2]int{first.served(), second.served()}
	holder := leaseHolder(t, ns)
	require.True(t, first.holds(holder), "the first replica still leads (lease holder %q)", holder)
	killed := time.Now() // kill() returns once the process is reaped
	first.kill()
	t.Logf("SIGKILLed the leader after %d registrations (served so far: killed replica %d, survivor %d)", ok.Load(), servedBefore[0], servedBefore[1])
	wg.Wait()
	close(errs)
	loadTime := time.Since(loadStart)
	for err := range errs {
		t.Error(err)
	}

	mu.Lock()
	var failed []attempt
	afterKill, lastFailure := 0, time.Duration(0)
	for _, a := range attempts {
		if a.err != nil {
			failed = append(failed, a)
			if d := a.end.Sub(killed); d > lastFailure {
				lastFailure = d
			}
		} else if a.start.After(killed) {
			afterKill++
		}
	}
	total := len(attempts)
	mu.Unlock()
	sort.Slice(failed, func(i, j int) bool { return failed[i].start.Before(failed[j].start) })
	for _, a := range failed {
		t.Logf("failed attempt %d of host %d: started %s, ended %s (relative to the kill): %v",
			a.n, a.host, signed(a.start.Sub(killed)), signed(a.end.Sub(killed)), a.err)
	}
	t.Logf("%d hosts in %s: %d attempts, %d failed (last failure ended %s after the kill), %d successful registrations started after the kill",
		hosts, loadTime.Round(time.Millisecond), total, len(failed), lastFailure.Round(time.Millisecond), afterKill)
	assert.Greater(t, afterKill, 0, "registrations continued after the kill")
	for _, a := range failed {
		assert.True(t, a.end.After(killed), "a registration failed before the kill: %v", a.err)
	}
	waitSessions(t, r, 1, 10*time.Second)
	servedAfter := second.served()
	t.Logf("survivor served %d registrations after the kill", servedAfter-servedBefore[1])
	assert.GreaterOrEqual(t, servedAfter-servedBefore[1], afterKill, "the survivor served every registration after the kill")
	waitInventories(t, ns, hosts)

	// The survivor takes the Lease (4 s after the kill at most) and its
	// inventory controller gives every host its plan Secret.
	eventually(t, 20*time.Second, func() error {
		if h := leaseHolder(t, ns); !second.holds(h) {
			return fmt.Errorf("lease held by %q", h)
		}
		list, err := inventories.List(ns, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, mi := range list.Items {
			if _, err := env.Client.CoreV1().Secrets(ns).Get(context.Background(), mi.Name, metav1.GetOptions{}); err != nil {
				return fmt.Errorf("plan Secret of %s: %w", mi.Name, err)
			}
		}
		return nil
	})
	t.Logf("survivor leads and every inventory has its plan Secret %s after the kill", time.Since(killed).Round(time.Millisecond))

	// Phase 2: the survivor stops (SIGTERM), a fresh replica dials in and serves.
	second.term()
	waitSessions(t, r, 0, 10*time.Second)
	restarted := time.Now()
	fresh := startRancherModeReplica(t, ns)
	took := waitSessions(t, r, 1, 30*time.Second)
	t.Logf("fresh replica connected %s after its start", took.Round(time.Millisecond))
	var late []attempt
	recordLate := func(a attempt) { late = append(late, a) }
	for i := hosts; i < hosts+5; i++ {
		require.NoError(t, newSimHost(i).registerRetrying(i, reg, r.URL, false, recordLate))
	}
	require.NoError(t, newSimHost(0).registerRetrying(0, reg, r.URL, true, recordLate), "re-registration")
	t.Logf("fresh replica: 6 registrations in %d attempts, %s after its start", len(late), time.Since(restarted).Round(time.Millisecond))
	assert.Len(t, late, 6, "no attempt failed on the fresh replica")
	assert.Equal(t, 6, fresh.served())
	waitInventories(t, ns, hosts+5)
}
