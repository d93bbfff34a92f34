package operator

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/elemental-operator/elemental-operator/pkg/tunnel"
)

func TestTunnelLine(t *testing.T) {
	line, ok := tunnelLine(tunnel.Status{}, false)
	assert.Empty(t, line)
	assert.True(t, ok)
	line, ok = tunnelLine(tunnel.Status{Connected: true, Host: "rancher:443", Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, true)
	assert.Equal(t, "[+]rancher-tunnel ok: connected to rancher:443 since 2026-01-02T03:04:05Z", line)
	assert.True(t, ok)
	line, ok = tunnelLine(tunnel.Status{Reason: "Secret ns/x: the Secret has no token yet"}, true)
	assert.Equal(t, "[-]rancher-tunnel not connected: Secret ns/x: the Secret has no token yet", line)
	assert.False(t, ok)
}

func TestReadyzWithoutTunnel(t *testing.T) {
	var ready atomic.Bool
	h := (&healthChecks{ready: &ready}).mux()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	code, _ := get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	ready.Store(true)
	code, body := get("/readyz?verbose")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "[+]controllers ok\n", body)
	code, body = get("/readyz/rancher-tunnel")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "not used")
}
