package testenv

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/rancher/remotedialer"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
)

// route is one entry of the aggregation router: a path prefix or an exact
// path of an APIService, and the session key its requests tunnel to.
type route struct {
	prefix, path, key string
}

// rancherUser is a caller as Rancher's authentication sees it.
type rancherUser struct {
	name   string
	groups []string
}

var unauthenticatedUser = rancherUser{name: "system:unauthenticated", groups: []string{"system:unauthenticated"}}

func (u rancherUser) unauthenticated() bool {
	for _, g := range u.groups {
		if g == "system:unauthenticated" {
			return true
		}
	}
	return false
}

// generation is one run of the Rancher process: its listener, its tunnel
// server and every connection; Restart replaces it.
type generation struct {
	r      *Rancher
	remote *remotedialer.Server
	srv    *http.Server

	mu       sync.Mutex
	closed   bool
	conns    map[net.Conn]http.ConnState
	tunnels  map[*tunnel]struct{}
	backends map[string]*rest.Config
}

// tunnel is one /v3/connect client: the key and token it was accepted with
// and its connection.
type tunnel struct {
	key, token string
	conn       net.Conn
}

type connContextKey struct{}

func (r *Rancher) serve(listeners []net.Listener) {
	g := &generation{
		r:        r,
		conns:    map[net.Conn]http.ConnState{},
		tunnels:  map[*tunnel]struct{}{},
		backends: map[string]*rest.Config{},
	}
	g.remote = remotedialer.New(func(req *http.Request) (string, bool, error) {
		key, ok := r.authorize(bearerToken(req))
		return key, ok, nil
	}, remotedialer.DefaultErrorWriter)
	g.srv = &http.Server{
		Handler: g,
		TLSConfig: &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert := r.certs[hello.Conn.LocalAddr().String()]
			return &cert, nil
		}},
		ConnState: g.connState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connContextKey{}, c)
		},
	}
	r.mu.Lock()
	r.gen = g
	r.mu.Unlock()
	for _, l := range listeners {
		go func() { _ = g.srv.ServeTLS(l, "", "") }()
	}
}

// bearerToken is the token as Rancher's APIService authorizer reads it.
func bearerToken(req *http.Request) string {
	return strings.TrimSpace(strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer "))
}

func (g *generation) connState(c net.Conn, s http.ConnState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s == http.StateClosed {
		delete(g.conns, c)
		return
	}
	if g.closed {
		_ = c.Close()
		return
	}
	g.conns[c] = s
}

// close drops everything, as a dying process: the listener, every
// connection, hijacked ones (tunnels, proxied upgrades) included, without
// a TLS goodbye.
func (g *generation) close() {
	g.mu.Lock()
	g.closed = true
	var hijacked []net.Conn
	for c, s := range g.conns {
		if s == http.StateHijacked {
			hijacked = append(hijacked, c)
		}
	}
	g.mu.Unlock()
	_ = g.srv.Close()
	for _, c := range hijacked {
		closeRaw(c)
	}
}

func closeRaw(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.NetConn().Close()
		return
	}
	_ = c.Close()
}

func (g *generation) closeTunnels(match func(*tunnel) bool) {
	g.mu.Lock()
	var conns []net.Conn
	for t := range g.tunnels {
		if match(t) {
			conns = append(conns, t.conn)
		}
	}
	g.mu.Unlock()
	for _, c := range conns {
		closeRaw(c)
	}
}

func (g *generation) sessions(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for t := range g.tunnels {
		if t.key == key && g.conns[t.conn] == http.StateHijacked {
			n++
		}
	}
	return n
}

func (g *generation) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/v3/connect" {
		g.connect(w, req)
		return
	}
	caller := g.r.authenticate(req)

	// Rancher's RewriteLocalCluster comes first: the local cluster's prefix
	// is dropped and the rest of the chain sees the bare path.
	const local = "/k8s/clusters/local"
	if strings.HasPrefix(req.URL.Path, local) {
		req.URL.Path = strings.TrimPrefix(req.URL.Path, local)
		req.URL.RawPath = strings.TrimPrefix(req.URL.RawPath, local)
		if req.URL.Path == "" {
			req.URL.Path = "/"
		}
	}

	// gorilla/mux, which all of Rancher's routers are, redirects paths that
	// are not clean before matching.
	escaped := req.URL.EscapedPath()
	if clean := cleanPath(escaped); clean != escaped {
		u := url.URL{Path: clean, RawQuery: req.URL.RawQuery}
		if p, err := url.PathUnescape(clean); err == nil {
			u.Path, u.RawPath = p, clean
		}
		w.Header().Set("Location", u.String())
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}

	if key, ok := g.r.match(escaped); ok {
		g.aggregate(w, req, key, caller)
		return
	}
	if steveProxied(req.URL.Path) {
		proxyAs(w, req, g.r.api, caller)
		return
	}
	serveUI(w, req)
}

// cleanPath is gorilla/mux's: path.Clean that keeps a trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// steveProxied are the paths steve's router hands to its kube-apiserver proxy.
func steveProxied(p string) bool {
	return p == "/api" || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/apis") ||
		strings.HasPrefix(p, "/openapi") || strings.HasPrefix(p, "/version")
}

func (r *Rancher) authenticate(req *http.Request) rancherUser {
	h := req.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Bearer ") {
		return unauthenticatedUser
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if u, ok := r.users[strings.TrimPrefix(h, "Bearer ")]; ok {
		return u
	}
	return unauthenticatedUser
}

func (r *Rancher) match(escapedPath string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rt := range r.routes {
		if rt.prefix != "" && strings.HasPrefix(escapedPath, rt.prefix) {
			return rt.key, true
		}
		if rt.path != "" && escapedPath == rt.path {
			return rt.key, true
		}
	}
	return "", false
}

// connect serves /v3/connect with the real remotedialer server, remembering
// the connection so rotation and restarts can drop it.
func (g *generation) connect(w http.ResponseWriter, req *http.Request) {
	token := bearerToken(req)
	key, ok := g.r.authorize(token)
	conn, _ := req.Context().Value(connContextKey{}).(net.Conn)
	if ok && conn != nil {
		t := &tunnel{key: key, token: token, conn: conn}
		g.mu.Lock()
		g.tunnels[t] = struct{}{}
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			delete(g.tunnels, t)
			g.mu.Unlock()
		}()
	}
	g.remote.ServeHTTP(w, req)
}

var clusterPrefix = regexp.MustCompile(`^/k8s/clusters/[^/]+`)

// aggregate is Rancher's aggregation handler for one APIService: wait for
// a session (polling once a second), else 503; proxy through the tunnel.
func (g *generation) aggregate(w http.ResponseWriter, req *http.Request, key string, caller rancherUser) {
	wait := g.r.opts.SessionWait
	poll := time.Second
	if wait < poll {
		poll = wait
	}
	deadline := time.Now().Add(wait)
	for !g.remote.HasSession(key) && time.Now().Before(deadline) {
		select {
		case <-req.Context().Done():
			return
		case <-time.After(poll):
		}
	}
	if !g.remote.HasSession(key) {
		http.Error(w, "Handler disconnected", http.StatusServiceUnavailable)
		return
	}
	if prefix := clusterPrefix.FindString(req.URL.Path); prefix != "" {
		req.Header.Set("X-API-URL-Prefix", prefix)
	}
	proxyAs(w, req, g.backend(key), caller)
}

// backend is the rest.Config Rancher proxies an APIService's requests with:
// no credential, a transport that dials through the tunnel.
func (g *generation) backend(key string) *rest.Config {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cfg, ok := g.backends[key]; ok {
		return cfg
	}
	cfg := &rest.Config{
		Host:      "http://" + key,
		UserAgent: rest.DefaultKubernetesUserAgent() + " " + key,
		Transport: &http.Transport{DialContext: g.remote.Dialer(key)},
	}
	g.backends[key] = cfg
	return cfg
}

// proxyAs proxies req to base's host as steve's ImpersonatingHandler does:
// an unauthenticated caller with a bearer token has that token sent instead of
// base's credential; anyone else is impersonated with base's credential.
func proxyAs(w http.ResponseWriter, req *http.Request, base *rest.Config, caller rancherUser) {
	cfg := rest.CopyConfig(base)
	authed := true
	if caller.unauthenticated() && strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") {
		cfg.Username, cfg.Password = "", ""
		cfg.BearerTokenFile = ""
		cfg.CertFile, cfg.CertData = "", nil
		cfg.KeyFile, cfg.KeyData = "", nil
		cfg.ExecProvider, cfg.AuthProvider, cfg.AuthConfigPersister = nil, nil, nil
		cfg.Impersonate = rest.ImpersonationConfig{}
		cfg.BearerToken = strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
	} else {
		authed = !caller.unauthenticated()
		cfg.Impersonate = rest.ImpersonationConfig{UserName: caller.name, Groups: caller.groups}
	}
	// steve answers 401 rather than 403 to anonymous API requests.
	if !authed && strings.HasPrefix(req.URL.Path, "/api") {
		http.Error(w, "not authorized", http.StatusUnauthorized)
		return
	}
	handler, err := upgradeAwareProxy(cfg)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req = req.Clone(req.Context())
	for k := range req.Header {
		if strings.HasPrefix(k, "Impersonate-") {
			delete(req.Header, k)
		}
	}
	req.Header.Del("Authorization")
	if req.Header.Get("X-Forwarded-Proto") == "" && req.TLS != nil {
		req.Header.Set("X-Forwarded-Proto", "https")
	}
	handler.ServeHTTP(w, req)
}

// upgradeAwareProxy is the kubectl-proxy-style handler steve builds for a
// rest.Config: the request's own path and query, upgrades included, the
// config's credential and impersonation added by its transport.
func upgradeAwareProxy(cfg *rest.Config) (http.Handler, error) {
	host := cfg.Host
	if !strings.HasSuffix(host, "/") {
		host += "/"
	}
	target, err := url.Parse(host)
	if err != nil {
		return nil, err
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	tc, err := cfg.TransportConfig()
	if err != nil {
		return nil, err
	}
	wrappers, err := transport.HTTPWrappersForConfig(tc, proxy.MirrorRequest)
	if err != nil {
		return nil, err
	}
	h := proxy.NewUpgradeAwareHandler(target, rt, false, false, proxyErrorResponder{})
	h.UpgradeTransport = proxy.NewUpgradeRequestRoundTripper(rt, wrappers)
	h.UseRequestLocation = true
	return h, nil
}

// proxyErrorResponder answers a failed proxy attempt as steve does: 500 and
// the error's text.
type proxyErrorResponder struct{}

func (proxyErrorResponder) Error(w http.ResponseWriter, _ *http.Request, err error) {
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte(err.Error()))
}

// RancherIndexMarker is in the body of the UI's index page.
const RancherIndexMarker = "simulated Rancher UI"

const rancherIndex = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Rancher</title></head>
<body><!-- ` + RancherIndexMarker + ` --><div id="app"></div></body></html>
`

// serveUI is the end of Rancher's chain, its UI router: the dashboard's
// routes, and for anything else the index page for a browser or a 404.
func serveUI(w http.ResponseWriter, req *http.Request) {
	p := req.URL.Path
	switch {
	case p == "/" || p == "/dashboard":
		// The default ui-preferred is the Vue dashboard.
		http.Redirect(w, req, "/dashboard/", http.StatusFound)
	case strings.HasPrefix(p, "/dashboard/") || isBrowser(req):
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(rancherIndex))
	default:
		http.NotFound(w, req)
	}
}

// isBrowser is rancher/apiserver's parse.IsBrowser with checkAccepts: a
// User-Agent containing "mozilla" and an Accept that is empty or has "*/*".
func isBrowser(req *http.Request) bool {
	accepts := strings.ToLower(req.Header.Get("Accept"))
	if accepts == "" {
		accepts = "*/*"
	}
	return strings.Contains(strings.ToLower(req.Header.Get("User-Agent")), "mozilla") && strings.Contains(accepts, "*/*")
}
