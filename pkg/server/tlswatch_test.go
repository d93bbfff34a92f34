package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
	"github.com/elemental-operator/elemental-operator/pkg/server"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// servedSerial is the serial of the certificate a new connection to addr is
// given (trusting pool).
func servedSerial(addr string, pool *x509.CertPool) (string, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close() }()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

func serialOf(t *testing.T, certPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return cert.SerialNumber.Text(16)
}

func tlsSecret(ns, name string, ca *testenv.CA, certPEM, keyPEM []byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, "ca.crt": ca.PEM}}
}

// cert-manager-style renewals of --registration-tls-secret while hosts
// register in a loop: no registration fails, each new connection gets the
// newest certificate, hosts are given the new CA, and a broken Secret keeps
// the last good certificate (and is counted).
func TestCertificateRotationWhileHostsRegister(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	ca1, err := testenv.NewCA("reg-ca-1")
	require.NoError(t, err)
	ca2, err := testenv.NewCA("reg-ca-2")
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca1.PEM)
	pool.AppendCertsFromPEM(ca2.PEM)
	bothCAs := string(ca1.PEM) + string(ca2.PEM)

	secrets := env.Client.CoreV1().Secrets(ns)
	certPEM, keyPEM, err := ca1.Serving()
	require.NoError(t, err)
	_, err = secrets.Create(ctx, tlsSecret(ns, "reg-tls", ca1, certPEM, keyPEM), metav1.CreateOptions{})
	require.NoError(t, err)

	addr, err := testenv.FreeAddr()
	require.NoError(t, err)
	opts := serverOptions(addr, ns, endpoints.Direct)
	opts.TLSSecret = "reg-tls"
	rotating, err := server.Start(ctx, env.Config, opts)
	require.NoError(t, err)
	defer rotating.Stop()
	assert.Equal(t, string(ca1.PEM), rotating.CACert())
	mr := newRegistration(t, ns, "rotating", macRegistration())
	regURL := "https://" + rotating.Addr() + "/elemental/registration/" + mr.Status.RegistrationToken

	// Hosts register back to back, each on a new connection.
	var (
		stop       atomic.Bool
		registered atomic.Int64
		mu         sync.Mutex
		failures   []string
		wg         sync.WaitGroup
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				mac := fmt.Sprintf("52:54:01:%02x:%02x:%02x", w, i/256, i%256)
				_, err := client.Register(context.Background(), client.Request{
					URL: regURL, CACert: bothCAs, Authorization: client.PlainAuth(mac),
					Smbios: map[string]interface{}{"System Information": map[string]interface{}{"UUID": "uuid-" + mac}},
				})
				if err != nil {
					mu.Lock()
					failures = append(failures, mac+": "+err.Error())
					mu.Unlock()
					continue
				}
				registered.Add(1)
			}
		}()
	}
	waitRegistrations := func(n int64) {
		t.Helper()
		want := registered.Load() + n
		eventually(t, time.Minute, func() error {
			if got := registered.Load(); got < want {
				return fmt.Errorf("%d registrations, want %d", got, want)
			}
			return nil
		})
	}
	rotate := func(ca *testenv.CA) string {
		t.Helper()
		certPEM, keyPEM, err := ca.Serving()
		require.NoError(t, err)
		s, err := secrets.Get(ctx, "reg-tls", metav1.GetOptions{})
		require.NoError(t, err)
		s.Data = tlsSecret(ns, "reg-tls", ca, certPEM, keyPEM).Data
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		require.NoError(t, err)
		want := serialOf(t, certPEM)
		eventually(t, 30*time.Second, func() error {
			got, err := servedSerial(rotating.Addr(), pool)
			if err != nil || got != want {
				return fmt.Errorf("serving serial %s (%v), want %s", got, err, want)
			}
			return nil
		})
		return want
	}

	waitRegistrations(3)
	rotate(ca1) // a renewal: same CA, new key and serial
	waitRegistrations(3)
	last := rotate(ca2) // a new CA: hosts are given it from now on
	assert.Equal(t, string(ca2.PEM), rotating.CACert())
	waitRegistrations(3)

	// A broken renewal: the last good certificate stays, counted once.
	invalid := testutil.ToFloat64(metrics.RegistrationTLSReloads.WithLabelValues("invalid"))
	s, err := secrets.Get(ctx, "reg-tls", metav1.GetOptions{})
	require.NoError(t, err)
	s.Data[corev1.TLSCertKey] = []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
	_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually(t, 30*time.Second, func() error {
		if got := testutil.ToFloat64(metrics.RegistrationTLSReloads.WithLabelValues("invalid")); got != invalid+1 {
			return fmt.Errorf("invalid reloads %v, want %v", got, invalid+1)
		}
		return nil
	})
	got, err := servedSerial(rotating.Addr(), pool)
	require.NoError(t, err)
	assert.Equal(t, last, got, "the last good certificate is still served")
	waitRegistrations(3)

	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, failures, "no registration failed during the rotations")
	t.Logf("%d registrations during the rotations", registered.Load())
}

// The generated Secret is followed too: a replica with another registration
// URL re-issues it for both hosts (every replica then serves that one), and
// deleting it (how an admin asks for a new CA) makes a new CA that every
// replica serves without a restart.
func TestGeneratedCertificateFollowedByEveryReplica(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	a := startDirect(ctx, t, ns, "reg-a.example.test")
	b := startDirect(ctx, t, ns, "reg-b.example.test")
	for _, srv := range []*server.Server{a, b} {
		for _, host := range []string{"reg-a.example.test", "reg-b.example.test"} {
			eventually(t, 30*time.Second, func() error { return dialsAs(t, srv, host) })
		}
	}
	s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, server.GeneratedTLSSecret, metav1.GetOptions{})
	require.NoError(t, err)
	// Converged: nobody re-issues it again.
	rv := s.ResourceVersion
	testenv.Consistently(t, 3*time.Second, func() error {
		s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, server.GeneratedTLSSecret, metav1.GetOptions{})
		if err != nil || s.ResourceVersion != rv {
			return fmt.Errorf("the Secret changed again (%v)", err)
		}
		return nil
	})

	oldCA := a.CACert()
	require.NoError(t, env.Client.CoreV1().Secrets(ns).Delete(ctx, server.GeneratedTLSSecret, metav1.DeleteOptions{}))
	for _, srv := range []*server.Server{a, b} {
		eventually(t, 30*time.Second, func() error {
			if srv.CACert() == oldCA {
				return fmt.Errorf("still the old CA")
			}
			return dialsAs(t, srv, "127.0.0.1")
		})
	}
	assert.Equal(t, a.CACert(), b.CACert())
	for _, host := range []string{"reg-a.example.test", "reg-b.example.test"} {
		eventually(t, 30*time.Second, func() error { return dialsAs(t, a, host) })
	}
}
