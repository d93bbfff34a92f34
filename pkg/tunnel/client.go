package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rancher/remotedialer"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"

	"github.com/elemental-operator/elemental-operator/pkg/metrics"
)

// Options configure a Client.
type Options struct {
	// Namespace and Secret name the Secret Rancher fills for our APIService.
	Namespace, Secret string
	// Handler serves every request Rancher sends through the tunnel.
	Handler http.Handler
	// NewServer builds the http.Server of each session (its timeouts and
	// limits); nil: a plain one with a header timeout. BaseContext is set here.
	NewServer func(http.Handler) *http.Server
	// Listener, when set, wraps each session's listener (connection limits).
	Listener func(net.Listener) net.Listener
	// MinBackoff and MaxBackoff bound the wait between dials; a session that
	// lasted ResetAfter starts the next wait from MinBackoff again.
	MinBackoff, MaxBackoff, ResetAfter time.Duration
	// DialTimeout bounds the TCP, TLS and WebSocket handshake together.
	DialTimeout time.Duration
}

func (o *Options) defaults() {
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.ResetAfter <= 0 {
		o.ResetAfter = 30 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 15 * time.Second
	}
}

// Status is the tunnel's state as /readyz and tests see it.
type Status struct {
	Connected bool
	// Reason says why it is not connected (never holds the token).
	Reason string
	// Since is when Connected last changed.
	Since time.Time
	// Host is Rancher's host:port from the Secret's url.
	Host string
}

// Client keeps one tunnel to Rancher per replica, following the Secret.
type Client struct {
	opts Options
	ctx  context.Context
	log  *logrus.Entry

	mu      sync.Mutex
	status  Status
	gen     int // bumped on every new target; older loops stop reporting
	current target
	running bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func newClient(ctx context.Context, opts Options) *Client {
	opts.defaults()
	c := &Client{opts: opts, ctx: ctx,
		log: logrus.WithFields(logrus.Fields{"component": "rancher-tunnel", "secret": opts.Namespace + "/" + opts.Secret})}
	c.status = Status{Reason: "waiting for the Secret", Since: time.Now()}
	return c
}

// Status returns a snapshot.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Wait blocks until every dial loop has stopped (after ctx ends).
func (c *Client) Wait() { c.wg.Wait() }

// update follows a change of the Secret (nil: deleted or absent).
func (c *Client) update(s *corev1.Secret) {
	t, wait := parseTarget(s)
	c.mu.Lock()
	defer c.mu.Unlock()
	if wait != "" {
		c.stopLocked()
		c.setLocked(c.gen, false, "Secret "+c.opts.Namespace+"/"+c.opts.Secret+": "+wait, "")
		return
	}
	if c.running && c.current.equal(t) {
		return
	}
	if c.running {
		c.log.WithField("rancher", t.host()).Info("Rancher tunnel Secret changed: reconnecting")
	}
	c.stopLocked()
	c.gen++
	ctx, cancel := context.WithCancel(c.ctx)
	c.current, c.running, c.cancel = t, true, cancel
	c.setLocked(c.gen, false, "connecting", t.host())
	c.wg.Add(1)
	go func(gen int) {
		defer c.wg.Done()
		c.loop(ctx, gen, t)
	}(c.gen)
}

func (c *Client) stopLocked() {
	if c.cancel != nil {
		c.cancel()
	}
	c.running, c.cancel, c.current = false, nil, target{}
	c.gen++
}

// setLocked records a state change of loop gen; stale loops are ignored.
func (c *Client) setLocked(gen int, connected bool, reason, host string) {
	if gen != c.gen {
		return
	}
	if c.status.Connected != connected {
		c.status.Since = time.Now()
	}
	c.status.Connected, c.status.Reason = connected, reason
	if host != "" {
		c.status.Host = host
	}
	if connected {
		metrics.TunnelConnected.Set(1)
	} else {
		metrics.TunnelConnected.Set(0)
	}
}

func (c *Client) set(gen int, connected bool, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(gen, connected, reason, "")
}

// loop dials until ctx ends, backing off between failures.
func (c *Client) loop(ctx context.Context, gen int, t target) {
	attempt := 0
	for {
		lasted, err := c.serve(ctx, gen, t, attempt)
		if ctx.Err() != nil {
			return
		}
		if lasted >= c.opts.ResetAfter {
			attempt = 0
		}
		delay := backoff(attempt, c.opts.MinBackoff, c.opts.MaxBackoff)
		attempt++
		c.set(gen, false, err.Error())
		c.log.WithError(err).WithFields(logrus.Fields{"rancher": t.host(), "retry_in": delay.Round(time.Millisecond).String()}).
			Warn("Rancher tunnel not connected")
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// serve dials once and serves the session until it ends; it returns how
// long the session lasted (0 when the dial failed) and why it ended.
func (c *Client) serve(ctx context.Context, gen int, t target, attempt int) (time.Duration, error) {
	dialer := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: c.opts.DialTimeout,
		TLSClientConfig:  t.tlsConfig(),
	}
	dctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	ws, resp, err := dialer.DialContext(dctx, t.url, http.Header{"Authorization": []string{"Bearer " + t.token}})
	cancel()
	if err != nil {
		metrics.TunnelConnects.WithLabelValues("failed").Inc()
		return 0, dialError(err, resp)
	}
	metrics.TunnelConnects.WithLabelValues("connected").Inc()
	began := time.Now()
	c.set(gen, true, "")
	c.log.WithFields(logrus.Fields{"rancher": t.host(), "attempt": attempt + 1}).Info("Rancher tunnel connected")

	l := newPipeListener()
	var srv *http.Server
	if c.opts.NewServer != nil {
		srv = c.opts.NewServer(forwardedFor(c.opts.Handler))
	} else {
		srv = &http.Server{Handler: forwardedFor(c.opts.Handler), ReadHeaderTimeout: 10 * time.Second}
	}
	srv.BaseContext = func(_ net.Listener) context.Context { return ctx }
	var served net.Listener = l
	if c.opts.Listener != nil {
		served = c.opts.Listener(l)
	}
	go func() { _ = srv.Serve(served) }()
	session := remotedialer.NewClientSessionWithDialer(func(_, _ string) bool { return true }, ws, l.dial)
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	_, err = session.Serve(ctx)
	stop()
	session.Close()
	_ = l.Close()
	_ = srv.Close()
	_ = ws.Close()
	if err == nil {
		err = errors.New("session closed")
	}
	return time.Since(began), fmt.Errorf("tunnel session ended: %w", err)
}

// dialError explains a failed dial without echoing credentials.
func dialError(err error, resp *http.Response) error {
	if resp == nil {
		if strings.Contains(err.Error(), "x509") || strings.Contains(err.Error(), "certificate") {
			return fmt.Errorf("TLS verification of Rancher failed (does the Secret's ca.crt match Rancher's certificate?): %w", err)
		}
		return fmt.Errorf("dialing Rancher: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("rancher refused the tunnel token (HTTP 401 %s): waiting for Rancher to write a current token into the Secret", msg)
	}
	return fmt.Errorf("rancher answered the tunnel dial with HTTP %d: %s", resp.StatusCode, msg)
}

// backoff is min·2^attempt capped at max.
func backoff(attempt int, min, max time.Duration) time.Duration {
	d := min
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// forwardedFor makes RemoteAddr the address Rancher saw (the last
// X-Forwarded-For hop its proxy appended): every tunnelled request would
// otherwise come from the same in-memory pipe. Only Rancher can put requests
// into the tunnel, so its header is trusted.
func forwardedFor(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			hops := strings.Split(xff, ",")
			r.RemoteAddr = strings.TrimSpace(hops[len(hops)-1])
		}
		h.ServeHTTP(w, r)
	})
}
