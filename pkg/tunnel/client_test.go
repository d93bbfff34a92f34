package tunnel

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rancher/remotedialer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/elemental-operator/elemental-operator/pkg/metrics"
)

// fakeRancher is the real remotedialer server behind /v3/connect, accepting
// one bearer token, as Rancher's APIService authorizer does.
type fakeRancher struct {
	srv    *httptest.Server
	remote *remotedialer.Server
	token  atomic.Value
	conns  *trackingListener
}

// trackingListener remembers raw connections: hijacked WebSockets are not
// tracked by httptest, and a restarting Rancher drops them all.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// restart drops every connection, as a Rancher restart does.
func (l *trackingListener) restart() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

func startFakeRancher(t *testing.T) *fakeRancher {
	t.Helper()
	r := &fakeRancher{}
	r.token.Store("good")
	r.remote = remotedialer.New(func(req *http.Request) (string, bool, error) {
		tok := strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
		return "stv-test", tok == r.token.Load().(string), nil
	}, remotedialer.DefaultErrorWriter)
	mux := http.NewServeMux()
	mux.Handle("/v3/connect", r.remote)
	r.srv = httptest.NewUnstartedServer(mux)
	r.conns = &trackingListener{Listener: r.srv.Listener}
	r.srv.Listener = r.conns
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *fakeRancher) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw}))
}

func (r *fakeRancher) secret(token, ca string) *corev1.Secret {
	return secret(map[string]string{"url": r.srv.URL + "/v3/connect", "token": token, "ca.crt": ca})
}

// get sends a request through the tunnel, as Rancher's proxy does.
func (r *fakeRancher) get(path string) (int, string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: r.remote.Dialer("stv-test")}}
	req, _ := http.NewRequest(http.MethodGet, "http://stv-test"+path, nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.7, 192.0.2.1")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// selfSignedPEM is a CA that did not sign the fake Rancher's certificate.
func selfSignedPEM(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not rancher"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Path+" from "+r.RemoteAddr)
	})
}

func fastOptions(h http.Handler) Options {
	return Options{Namespace: "ns", Secret: "elemental-operator", Handler: h,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, DialTimeout: 5 * time.Second}
}

func waitStatus(t *testing.T, c *Client, want func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s := c.Status(); want(s) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	s := c.Status()
	t.Fatalf("tunnel status never matched; last: %+v", s)
	return s
}

func connected(s Status) bool { return s.Connected }

func TestTunnelServesThroughRancher(t *testing.T) {
	r := startFakeRancher(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClient(ctx, fastOptions(echo()))

	c.update(nil)
	assert.Contains(t, c.Status().Reason, "does not exist")

	c.update(r.secret("good", r.caPEM()))
	waitStatus(t, c, connected)
	code, body, err := r.get("/elemental/registration/abc")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "/elemental/registration/abc from 192.0.2.1", body, "RemoteAddr is the hop Rancher saw")

	// The Secret going away stops the tunnel.
	c.update(nil)
	s := waitStatus(t, c, func(s Status) bool { return !s.Connected })
	assert.Contains(t, s.Reason, "does not exist")
	cancel()
	c.Wait()
}

func TestTunnelBadSecretThenFixed(t *testing.T) {
	r := startFakeRancher(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClient(ctx, fastOptions(echo()))

	c.update(r.secret("stale", r.caPEM()))
	s := waitStatus(t, c, func(s Status) bool { return strings.Contains(s.Reason, "401") })
	assert.NotContains(t, s.Reason, "stale", "the token is never reported")

	wrongCA := selfSignedPEM(t)
	c.update(r.secret("good", wrongCA))
	waitStatus(t, c, func(s Status) bool { return strings.Contains(s.Reason, "TLS verification") })

	c.update(r.secret("good", r.caPEM()))
	waitStatus(t, c, connected)
	cancel()
	c.Wait()
}

// Rancher restarting 100 times: the client reconnects each time, and neither
// goroutines nor heap grow with the number of reconnects.
func TestTunnelReconnectsWithoutLeaks(t *testing.T) {
	r := startFakeRancher(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newClient(ctx, fastOptions(echo()))
	c.update(r.secret("good", r.caPEM()))
	waitStatus(t, c, connected)

	cycle := func() {
		before := c.Status().Since
		r.conns.restart()
		waitStatus(t, c, func(s Status) bool { return s.Connected && s.Since.After(before) })
	}
	for i := 0; i < 10; i++ { // warm up pools and lazily started goroutines
		cycle()
	}
	settle := func() (int, uint64) {
		var ms runtime.MemStats
		for i := 0; i < 3; i++ {
			runtime.GC()
			time.Sleep(50 * time.Millisecond)
		}
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapInuse
	}
	g0, h0 := settle()
	for i := 0; i < 100; i++ {
		cycle()
	}
	code, _, err := r.get("/elemental/x")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	g1, h1 := settle()
	t.Logf("after 100 reconnects: goroutines %d -> %d, heap in use %d KiB -> %d KiB", g0, g1, h0/1024, h1/1024)
	assert.LessOrEqual(t, g1, g0+10, "goroutines must not grow with reconnects")
	assert.Less(t, int64(h1)-int64(h0), int64(8<<20), "heap must not grow by 8 MiB over 100 reconnects")
	cancel()
	c.Wait()
}

// Rancher unreachable: every dial fails, the client keeps trying with its
// bounded backoff, and 100 failed dials leave no goroutines or heap behind.
func TestTunnelUnreachableRancherDoesNotLeak(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := fastOptions(echo())
	opts.MinBackoff, opts.MaxBackoff = time.Millisecond, 2*time.Millisecond
	c := newClient(ctx, opts)
	g0 := runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	h0 := ms.HeapInuse
	failed := func() float64 { return testutil.ToFloat64(metrics.TunnelConnects.WithLabelValues("failed")) }
	before := failed()
	c.update(secret(map[string]string{"url": "https://" + addr + "/v3/connect", "token": "t"}))
	waitStatus(t, c, func(s Status) bool { return failed()-before >= 100 })
	s := c.Status()
	assert.False(t, s.Connected)
	assert.Contains(t, s.Reason, "dialing Rancher")
	cancel()
	c.Wait()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	g1 := runtime.NumGoroutine()
	t.Logf("after %v failed dials: goroutines %d -> %d, heap in use %d KiB -> %d KiB", failed()-before, g0, g1, h0/1024, ms.HeapInuse/1024)
	assert.LessOrEqual(t, g1, g0+2)
	assert.Less(t, int64(ms.HeapInuse)-int64(h0), int64(4<<20))
}
