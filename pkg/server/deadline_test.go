package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
	"github.com/elemental-operator/elemental-operator/pkg/server"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// slowAPIServer is a proxy in front of the test apiserver that, while slow
// is set, holds every MachineInventory write until its caller gives up.
func slowAPIServer(t *testing.T, slow *atomic.Bool) *rest.Config {
	t.Helper()
	target, err := url.Parse(env.Config.Host)
	require.NoError(t, err)
	transport, err := rest.TransportFor(env.Config)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = transport
	proxy.FlushInterval = -1 // watches stream
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() && r.Method != http.MethodGet && strings.Contains(r.URL.Path, "/machineinventories") {
			// Read the body, so that a caller giving up is noticed.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
			}
			http.Error(w, "slow apiserver gave up", http.StatusGatewayTimeout)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		front.CloseClientConnections() // the server's watches
		front.Close()
	})
	return &rest.Config{Host: front.URL, QPS: -1}
}

// A slow API server: the host gets the server's error before its own 10 s
// deadline, nothing is half-created, and its slot is free for the next host.
func TestSlowAPIServerAnswersBeforeTheHostGivesUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	var slow atomic.Bool
	addr, err := testenv.FreeAddr()
	require.NoError(t, err)
	opts := serverOptions(addr, ns, endpoints.Direct)
	opts.MaxInFlight = 1 // a slot held by the slow host would refuse the next one
	slowSrv, err := server.Start(ctx, slowAPIServer(t, &slow), opts)
	require.NoError(t, err)
	defer slowSrv.Stop()
	mr := newRegistration(t, ns, "slow", macRegistration())
	regURL := "https://" + slowSrv.Addr() + "/elemental/registration/" + mr.Status.RegistrationToken
	registerAt := func(mac string) error {
		_, err := client.Register(context.Background(), client.Request{
			URL: regURL, CACert: slowSrv.CACert(), Authorization: client.PlainAuth(mac),
			Smbios: map[string]interface{}{"System Information": map[string]interface{}{"UUID": "uuid-" + mac}},
		})
		return err
	}

	slow.Store(true)
	err = registerAt("52:54:00:de:ad:01")
	// The server's answer, not the client's own timeout ("i/o timeout").
	require.Error(t, err)
	assert.Contains(t, err.Error(), "creating the MachineInventory failed")
	assert.Nil(t, inventoryByHash(t, ns, hashOf("52:54:00:de:ad:01")), "nothing half-created")

	slow.Store(false)
	require.NoError(t, registerAt("52:54:00:de:ad:02"), "the slot was freed")
	assert.NotNil(t, inventoryByHash(t, ns, hashOf("52:54:00:de:ad:02")))
}
