package operator

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elemental-operator/elemental-operator/pkg/tunnel"
)

// healthChecks serves /healthz and /readyz. Readiness is the process's own
// (caches synced, handlers registered); the Rancher tunnel is reported in
// /readyz?verbose and on /readyz/rancher-tunnel but does not fail /readyz:
// a Rancher outage must not take every replica out of its Service.
type healthChecks struct {
	ready *atomic.Bool

	mu     sync.Mutex
	tunnel *tunnel.Client
}

func (h *healthChecks) setTunnel(t *tunnel.Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tunnel = t
}

func (h *healthChecks) tunnelStatus() (tunnel.Status, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tunnel == nil {
		return tunnel.Status{}, false
	}
	return h.tunnel.Status(), true
}

// tunnelLine is the verbose line for the tunnel, "" without one.
func tunnelLine(s tunnel.Status, ok bool) (string, bool) {
	if !ok {
		return "", true
	}
	if s.Connected {
		return fmt.Sprintf("[+]rancher-tunnel ok: connected to %s since %s", s.Host, s.Since.UTC().Format(time.RFC3339)), true
	}
	return "[-]rancher-tunnel not connected: " + s.Reason, false
}

func (h *healthChecks) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	m.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ready := h.ready.Load()
		_, verbose := r.URL.Query()["verbose"]
		if !verbose {
			if !ready {
				http.Error(w, "starting", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok"))
			return
		}
		var lines []string
		if ready {
			lines = append(lines, "[+]controllers ok")
		} else {
			lines = append(lines, "[-]controllers starting")
		}
		if line, _ := tunnelLine(h.tunnelStatus()); line != "" {
			lines = append(lines, line+" (informational)")
		}
		code := http.StatusOK
		if !ready {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(strings.Join(lines, "\n") + "\n"))
	})
	m.HandleFunc("/readyz/rancher-tunnel", func(w http.ResponseWriter, _ *http.Request) {
		line, ok := tunnelLine(h.tunnelStatus())
		if line == "" {
			line = "[+]rancher-tunnel not used (registration mode without Rancher)"
		}
		if !ok {
			http.Error(w, line, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(line + "\n"))
	})
	return m
}
