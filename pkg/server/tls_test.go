package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	"github.com/elemental-operator/elemental-operator/pkg/server"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// A new direct-mode hostname re-issues the generated serving certificate,
// signed by the same CA, so hosts that already trust it keep working.
func TestGeneratedCertificateFollowsTheRegistrationHost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns, err := env.NewNamespace(ctx, "tls")
	require.NoError(t, err)

	start := func(host string) *server.Server { return startDirect(ctx, t, ns, host) }
	verify := func(srv *server.Server, host string) error { return dialsAs(t, srv, host) }

	first := start("reg-a.example.test")
	require.NoError(t, verify(first, "reg-a.example.test"))
	assert.Error(t, verify(first, "reg-b.example.test"))

	second := start("reg-b.example.test")
	assert.Equal(t, first.CACert(), second.CACert(), "same CA: hosts keep trusting it")
	require.NoError(t, verify(second, "reg-b.example.test"))

	s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, server.GeneratedTLSSecret, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Contains(t, s.Data, "ca.key")

	// The same hostname again writes nothing.
	rv := s.ResourceVersion
	start("reg-b.example.test")
	s, err = env.Client.CoreV1().Secrets(ns).Get(ctx, server.GeneratedTLSSecret, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, rv, s.ResourceVersion)
}

// startDirect starts a direct-mode server in ns whose registration URL
// names host (its generated certificate follows that name).
func startDirect(ctx context.Context, t *testing.T, ns, host string) *server.Server {
	t.Helper()
	addr, err := testenv.FreeAddr()
	require.NoError(t, err)
	srv, err := server.Start(ctx, env.Config, server.Options{Addr: addr, Namespace: ns,
		Endpoints: endpoints.Static{Mode: endpoints.Direct, RegistrationURL: "https://" + host + ":8443"}})
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	return srv
}

// dialsAs completes a TLS handshake with srv as a host that trusts its CA
// and asks for host.
func dialsAs(t *testing.T, srv *server.Server, host string) error {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(srv.CACert())) {
		return fmt.Errorf("the server has no CA certificate")
	}
	conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: pool, ServerName: host})
	if err == nil {
		_ = conn.Close()
	}
	return err
}
