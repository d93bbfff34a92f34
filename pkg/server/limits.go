package server

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/elemental-operator/elemental-operator/pkg/metrics"
)

// Refusal reasons: the label of elemental_operator_registration_refusals_total.
const (
	refusedConnections  = "connections"
	refusedPerSource    = "per_source"
	refusedBusy         = "busy"
	refusedBytes        = "conversation_bytes"
	refusedMessages     = "conversation_messages"
	refusedDeadline     = "conversation_deadline"
	refusedMessageLarge = "message_too_large"
)

// MaxHeaderBytes caps a request's head on every path to the handler. The
// real client sends a few hundred bytes; a TPM attestation header a few KiB.
const MaxHeaderBytes = 64 << 10

// refuseTimeout bounds how long a connection refused at accept is kept to
// tell the client why (TLS handshake, reading its request head, answering).
const refuseTimeout = 2 * time.Second

// maxRefusing bounds the connections being answered at once after a
// refusal at accept; beyond it they are closed without an answer.
const maxRefusing = 64

func refused(reason string) { metrics.RegistrationRefusals.WithLabelValues(reason).Inc() }

// limits are the bounds read on every connection, request and
// conversation; held behind a pointer so tests can narrow them.
type limits struct {
	maxConnections, maxPerSource int
	conversationBytes            int64
	conversationMessages         int
	conversationTimeout          time.Duration
	meta                         metaCaps
}

// tally counts holders, in total and per source address.
type tally struct {
	mu        sync.Mutex
	total     int
	perSource map[string]int
}

// acquire admits one more holder from source ("" counts only in the total),
// or returns the refusal reason. A limit ≤ 0 is no limit.
func (t *tally) acquire(source string, maxTotal, maxPerSource int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if maxTotal > 0 && t.total >= maxTotal {
		return refusedConnections
	}
	if source != "" && maxPerSource > 0 && t.perSource[source] >= maxPerSource {
		return refusedPerSource
	}
	t.total++
	if source != "" {
		if t.perSource == nil {
			t.perSource = map[string]int{}
		}
		t.perSource[source]++
	}
	return ""
}

func (t *tally) release(source string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total--
	if source == "" {
		return
	}
	if t.perSource[source]--; t.perSource[source] <= 0 {
		delete(t.perSource, source)
	}
}

// sourceHost is the host part of a RemoteAddr ("ip:port", or a bare address
// as the tunnel sets it from X-Forwarded-For).
func sourceHost(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return strings.Trim(remote, "[]")
}

// refusal is the answer for a reason: status, Retry-After seconds, body.
// The real client prints the status line of a refused handshake (its body
// only for 401), so the status alone must say what happened; plain clients
// also get the one-line body.
func refusal(reason, source string) (int, int, string) {
	if reason == refusedPerSource {
		return http.StatusTooManyRequests, 10, fmt.Sprintf("too many registrations in progress from %s; retry later", source)
	}
	return http.StatusServiceUnavailable, 5, "registration server has too many open connections; retry later"
}

func writeRefusal(w http.ResponseWriter, reason, source string) {
	code, retry, msg := refusal(reason, source)
	w.Header().Set("Retry-After", fmt.Sprint(retry))
	w.Header().Set("Connection", "close")
	text(w, code, msg)
}

// NewHTTPServer is the http.Server every path to the registration handler
// uses (the direct listener and Rancher's tunnel): HTTP/1.1 only, a 64 KiB
// request head, and deadlines for requests that are not upgraded.
//
// ReadTimeout bounds reading a plain request; for an upgraded one the
// WebSocket upgrade clears the connection's deadlines and the protocol sets
// its own before every message, so it never cuts a conversation short.
func (s *Server) NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.opts.ReadTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		// Not nil: no HTTP/2 (no client of ours speaks it).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
}

// LimitListener applies the connection limits to l: beyond MaxConnections
// open connections in total (this listener and every other one wrapped by
// the same Server), or MaxPerSource from one TCP source address, a new
// connection is answered 503 or 429 and closed without reaching the
// http.Server. tlsConfig is what the connection speaks (nil: plain HTTP,
// the tunnel). Connections without a TCP address (the tunnel's in-memory
// pipes) count in the total only; their source is limited per request by
// the handler, from X-Forwarded-For.
func (s *Server) LimitListener(l net.Listener, tlsConfig *tls.Config) net.Listener {
	return &limitListener{Listener: l, s: s, tls: tlsConfig, refusing: make(chan struct{}, maxRefusing)}
}

// TunnelListener is LimitListener for the tunnel's plain-HTTP pipes.
func (s *Server) TunnelListener(l net.Listener) net.Listener { return s.LimitListener(l, nil) }

type limitListener struct {
	net.Listener
	s        *Server
	tls      *tls.Config
	refusing chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var source string
		if addr, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			source = addr.IP.String()
		}
		lim := l.s.limits.Load()
		reason := l.s.conns.acquire(source, lim.maxConnections, lim.maxPerSource)
		if reason == "" {
			return &countedConn{Conn: c, release: func() { l.s.conns.release(source) }}, nil
		}
		refused(reason)
		logrus.WithFields(logrus.Fields{"remote": c.RemoteAddr().String(), "reason": reason}).Debug("registration connection refused")
		select {
		case l.refusing <- struct{}{}:
			go func() {
				defer func() { <-l.refusing }()
				l.refuse(c, reason, source)
			}()
		default:
			_ = c.Close()
		}
	}
}

// refuse answers a connection refused at accept and closes it. The request
// head is read first: closing with unread input would reset the connection
// before the client reads the answer.
func (l *limitListener) refuse(c net.Conn, reason, source string) {
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	conn := c
	if l.tls != nil {
		tc := tls.Server(c, l.tls)
		if err := tc.Handshake(); err != nil {
			return
		}
		conn = tc
	}
	head := make([]byte, 0, 4096)
	buf := make([]byte, 1024)
	for len(head) < cap(head) && !bytes.Contains(head, []byte("\r\n\r\n")) {
		n, err := conn.Read(buf[:min(len(buf), cap(head)-len(head))])
		head = append(head, buf[:n]...)
		if err != nil {
			break
		}
	}
	code, retry, msg := refusal(reason, source)
	_, _ = fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), retry, len(msg), msg)
	if tc, ok := conn.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	} else if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	// Drain (bounded by the deadline) so the answer is not lost to a reset.
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, 256<<10))
}

// countedConn gives its slot back once, on the first Close.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
