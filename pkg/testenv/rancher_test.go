package testenv_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rancher/remotedialer"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// --- a minimal tunnel client, shaped like steve's aggregation client ---

// pipeListener hands connections the tunnel dials to an http.Server.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (l *pipeListener) Dial(ctx context.Context, _, _ string) (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case l.conns <- a:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

type tunnelClient struct {
	connects atomic.Int32
	stop     func()
}

// startTunnelClient dials the internal URL's /v3/connect with the token
// token() returns at each attempt, serves h over the tunnel and dials again
// 100 ms after any disconnect, until the test ends.
func startTunnelClient(t *testing.T, r *testenv.Rancher, token func() string, h http.Handler) *tunnelClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln := newPipeListener()
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	dialer := &websocket.Dialer{TLSClientConfig: trusting(r.InternalCAPEM), HandshakeTimeout: 10 * time.Second}
	c := &tunnelClient{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		url := strings.Replace(r.InternalURL, "https://", "wss://", 1) + "/v3/connect"
		for ctx.Err() == nil {
			c.serveOnce(ctx, dialer, url, token(), ln)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	c.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			_ = srv.Close()
			_ = ln.Close()
		})
	}
	t.Cleanup(c.stop)
	return c
}

// serveOnce is one session, as steve's aggregation client runs it: dial,
// then serve the session until it or ctx ends. (remotedialer's own
// ConnectToProxy races between its ping goroutine and Close when ctx ends
// right after connecting.)
func (c *tunnelClient) serveOnce(ctx context.Context, dialer *websocket.Dialer, url, token string, ln *pipeListener) {
	dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, resp, err := dialer.DialContext(dialCtx, url, http.Header{"Authorization": {"Bearer " + token}})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return
	}
	defer func() { _ = conn.Close() }()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = conn.Close()
	}()
	c.connects.Add(1)
	session := remotedialer.NewClientSessionWithDialer(func(string, string) bool { return true }, conn, ln.Dial)
	defer session.Close()
	_, _ = session.Serve(ctx)
}

func tlsConfig(r *testenv.Rancher) *tls.Config { return trusting(r.CAPEM) }

func trusting(caPEM []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{RootCAs: pool}
}

// seen is what the tunnelled handler received.
type seen struct {
	Path             string
	Authorization    string
	ImpersonateUser  string
	ImpersonateGroup []string
	ForwardedProto   string
	URLPrefix        string
}

// echoHandler reports what it received, and echoes WebSocket messages on /…/ws.
func echoHandler() http.Handler {
	upgrader := websocket.Upgrader{}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/ws") {
			conn, err := upgrader.Upgrade(w, req, nil)
			if err != nil {
				return
			}
			defer func() { _ = conn.Close() }()
			for {
				mt, msg, err := conn.ReadMessage()
				if err != nil {
					return
				}
				if err := conn.WriteMessage(mt, append([]byte("echo: "), msg...)); err != nil {
					return
				}
			}
		}
		_ = json.NewEncoder(w).Encode(seen{
			Path:             req.URL.Path,
			Authorization:    req.Header.Get("Authorization"),
			ImpersonateUser:  req.Header.Get("Impersonate-User"),
			ImpersonateGroup: req.Header.Values("Impersonate-Group"),
			ForwardedProto:   req.Header.Get("X-Forwarded-Proto"),
			URLPrefix:        req.Header.Get("X-API-URL-Prefix"),
		})
	})
}

// --- helpers ---

func startRancher(t *testing.T, opts testenv.RancherOptions) *testenv.Rancher {
	t.Helper()
	r, err := testenv.StartRancher(env.Config, opts)
	require.NoError(t, err)
	t.Cleanup(r.Stop)
	return r
}

func httpClient(r *testenv.Rancher) *http.Client {
	return &http.Client{
		Timeout:       30 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: tlsConfig(r), ForceAttemptHTTP2: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type response struct {
	code int
	body string
}

func get(t *testing.T, r *testenv.Rancher, path string, headers map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.URL+path, nil)
	require.NoError(t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := httpClient(r).Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{resp.StatusCode, string(body)}
}

func getSeen(t *testing.T, r *testenv.Rancher, path string, headers map[string]string) seen {
	t.Helper()
	resp := get(t, r, path, headers)
	require.Equal(t, http.StatusOK, resp.code, resp.body)
	var s seen
	require.NoError(t, json.Unmarshal([]byte(resp.body), &s), resp.body)
	return s
}

// newAPIService creates an APIService whose Secret goes to a new namespace;
// it is deleted when the test ends.
func newAPIService(t *testing.T, name string, prefixes, paths []string) (secretNS string) {
	t.Helper()
	ctx := context.Background()
	ns, err := env.NewNamespace(ctx, "rancher")
	require.NoError(t, err)
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	services := mf.Management().V3().APIService()
	_, err = services.Create(&mgmtv3.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       mgmtv3.APIServiceSpec{SecretName: "tunnel", SecretNamespace: ns, PathPrefixes: prefixes, Paths: paths},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := services.Delete(name, &metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting APIService %s: %v", name, err)
		}
	})
	return ns
}

// tunnelSecret waits for Rancher to write the APIService's Secret with the
// token it currently accepts.
func tunnelSecret(t *testing.T, r *testenv.Rancher, ns, apiService string) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	testenv.Eventually(t, 20*time.Second, func() error {
		var err error
		s, err = env.Client.CoreV1().Secrets(ns).Get(context.Background(), "tunnel", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if tok := r.Token(apiService); tok == "" || string(s.Data["token"]) != tok {
			return fmt.Errorf("secret token %q, Rancher accepts %q", s.Data["token"], tok)
		}
		return nil
	})
	return s
}

func waitSessions(t *testing.T, r *testenv.Rancher, apiService string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, r.WaitSessions(ctx, apiService, n))
}

// dialStatus dials /v3/connect with token and returns the refusal's status
// and body (0 when accepted).
func dialStatus(t *testing.T, r *testenv.Rancher, token string) (int, string) {
	t.Helper()
	d := &websocket.Dialer{TLSClientConfig: trusting(r.InternalCAPEM), HandshakeTimeout: 10 * time.Second}
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	conn, resp, err := d.Dial(strings.Replace(r.InternalURL, "https://", "wss://", 1)+"/v3/connect", h)
	if err == nil {
		_ = conn.Close()
		return 0, ""
	}
	require.NotNil(t, resp, err)
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// --- tests ---

func TestRancherSettings(t *testing.T) {
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	settings := mf.Management().V3().Setting()
	value := func(name string) string {
		s, err := settings.Get(name, metav1.GetOptions{})
		require.NoError(t, err, name)
		return s.Value
	}

	r := startRancher(t, testenv.RancherOptions{})
	require.True(t, strings.HasPrefix(r.URL, "https://127.0.0.1:"), r.URL)
	require.Equal(t, r.URL, value(testenv.SettingServerURL))
	require.Equal(t, r.URL, value(testenv.SettingInternalServerURL))
	require.Equal(t, string(r.CAPEM), value(testenv.SettingCACerts))
	require.Equal(t, string(r.CAPEM), value(testenv.SettingInternalCACerts))
	r.Stop()

	r = startRancher(t, testenv.RancherOptions{NoCACerts: true, AgentTLSMode: "system-store"})
	require.Equal(t, r.URL, value(testenv.SettingServerURL))
	require.Equal(t, "", value(testenv.SettingCACerts))
	require.Equal(t, string(r.CAPEM), value(testenv.SettingInternalCACerts))
	require.Equal(t, "system-store", value(testenv.SettingAgentTLSMode))
	r.Stop()

	r = startRancher(t, testenv.RancherOptions{SeparateInternalURL: true, NoCACerts: true})
	require.NotEqual(t, r.URL, r.InternalURL)
	require.NotEqual(t, string(r.CAPEM), string(r.InternalCAPEM))
	require.Equal(t, r.URL, value(testenv.SettingServerURL))
	require.Equal(t, "", value(testenv.SettingCACerts))
	require.Equal(t, r.InternalURL, value(testenv.SettingInternalServerURL))
	require.Equal(t, string(r.InternalCAPEM), value(testenv.SettingInternalCACerts))
}

func TestRancherAPIServiceTunnel(t *testing.T) {
	const name = "sim-elemental"
	r := startRancher(t, testenv.RancherOptions{SessionWait: 1500 * time.Millisecond})
	ns := newAPIService(t, name, []string{"/elemental/"}, []string{"/exact"})

	// Rancher's apiservice controller.
	secret := tunnelSecret(t, r, ns, name)
	require.Equal(t, r.URL+"/v3/connect", string(secret.Data["url"]))
	require.Equal(t, r.InternalURL, r.URL)
	require.Equal(t, string(r.CAPEM), string(secret.Data["ca.crt"]))
	require.Len(t, secret.Data["token"], 44, "base64 of a sha256")
	require.Len(t, secret.OwnerReferences, 1)
	require.Equal(t, "APIService", secret.OwnerReferences[0].Kind)
	require.Equal(t, name, secret.OwnerReferences[0].Name)
	_, err := env.Client.CoreV1().ServiceAccounts("cattle-system").Get(context.Background(), name+"-api-service", metav1.GetOptions{})
	require.NoError(t, err)
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	testenv.Eventually(t, 10*time.Second, func() error {
		obj, err := mf.Management().V3().APIService().Get(name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if obj.Status.ServiceAccountName != name+"-api-service" || obj.Status.ServiceAccountNamespace != "cattle-system" {
			return fmt.Errorf("status %+v", obj.Status)
		}
		return nil
	})
	token := string(secret.Data["token"])

	// /v3/connect refuses anything but that token.
	code, body := dialStatus(t, r, "wrong")
	require.Equal(t, http.StatusUnauthorized, code)
	require.Equal(t, "failed authentication", body)
	code, _ = dialStatus(t, r, "")
	require.Equal(t, http.StatusUnauthorized, code)

	// No session: the request waits, then 503.
	start := time.Now()
	resp := get(t, r, "/elemental/registration/abc", nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.code)
	require.Equal(t, "Handler disconnected\n", resp.body)
	require.GreaterOrEqual(t, time.Since(start), 1500*time.Millisecond)

	// A session: requests reach the handler.
	startTunnelClient(t, r, func() string { return token }, echoHandler())
	waitSessions(t, r, name, 1)
	require.True(t, r.HasSession(name))

	// elemental-register's token passes through; no impersonation then.
	s := getSeen(t, r, "/elemental/anything", map[string]string{"Authorization": "Bearer PLAINxyz", "Impersonate-User": "admin"})
	require.Equal(t, seen{Path: "/elemental/anything", Authorization: "Bearer PLAINxyz", ForwardedProto: "https"}, s)
	// Without a token, the caller is impersonated as anonymous.
	s = getSeen(t, r, "/elemental/anything", map[string]string{"Impersonate-User": "admin", "Impersonate-Group": "system:masters"})
	require.Equal(t, seen{Path: "/elemental/anything", ImpersonateUser: "system:unauthenticated",
		ImpersonateGroup: []string{"system:unauthenticated"}, ForwardedProto: "https"}, s)
	// A Rancher user is impersonated, its token kept back.
	r.AddUser("token-abc:secret", "u-abc", "local://u-abc")
	s = getSeen(t, r, "/elemental/anything", map[string]string{"Authorization": "Bearer token-abc:secret"})
	require.Equal(t, seen{Path: "/elemental/anything", ImpersonateUser: "u-abc",
		ImpersonateGroup: []string{"local://u-abc", "system:authenticated"}, ForwardedProto: "https"}, s)
	// The local cluster's prefix is stripped before routing.
	s = getSeen(t, r, "/k8s/clusters/local/elemental/x?y=1", nil)
	require.Equal(t, "/elemental/x", s.Path)
	// Exact paths.
	require.Equal(t, "/exact", getSeen(t, r, "/exact", nil).Path)

	// Not routed: the UI's answers.
	for _, p := range []string{"/exact/more", "/elemental", "/foo", "/v3/settings"} {
		resp = get(t, r, p, nil)
		require.Equal(t, http.StatusNotFound, resp.code, p)
		require.Equal(t, "404 page not found\n", resp.body, p)
	}
	browser := map[string]string{"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)", "Accept": "*/*"}
	resp = get(t, r, "/foo", browser)
	require.Equal(t, http.StatusOK, resp.code)
	require.Contains(t, resp.body, testenv.RancherIndexMarker)
	resp = get(t, r, "/foo", map[string]string{"User-Agent": "Mozilla/5.0", "Accept": "application/json"})
	require.Equal(t, http.StatusNotFound, resp.code)
	resp = get(t, r, "/", nil)
	require.Equal(t, http.StatusFound, resp.code)
	resp = get(t, r, "/elemental/../foo", nil)
	require.Equal(t, http.StatusMovedPermanently, resp.code)

	// WebSocket round trip through the tunnel.
	d := &websocket.Dialer{TLSClientConfig: tlsConfig(r), HandshakeTimeout: 10 * time.Second}
	ws, wsResp, err := d.Dial(strings.Replace(r.URL, "https://", "wss://", 1)+"/elemental/ws", nil)
	if wsResp != nil && err != nil {
		b, _ := io.ReadAll(wsResp.Body)
		t.Fatalf("websocket: %v: %d %s", err, wsResp.StatusCode, b)
	}
	require.NoError(t, err)
	for _, msg := range []string{"one", "two"} {
		require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte(msg)))
		_, got, err := ws.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, "echo: "+msg, string(got))
	}
	_ = ws.Close()

	// A second replica holds a session under the same key.
	startTunnelClient(t, r, func() string { return token }, echoHandler())
	waitSessions(t, r, name, 2)
}

func TestRancherLocalCluster(t *testing.T) {
	ctx := context.Background()
	r := startRancher(t, testenv.RancherOptions{})
	ns, err := env.NewNamespace(ctx, "local")
	require.NoError(t, err)
	_, err = env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "host"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = env.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "host"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = env.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "host"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "host"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "host", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "host", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	require.NoError(t, err)
	bearer := map[string]string{"Authorization": "Bearer " + tr.Status.Token}

	base := "/k8s/clusters/local/api/v1/namespaces/" + ns
	testenv.Eventually(t, 10*time.Second, func() error { // RBAC caches catch up
		if resp := get(t, r, base+"/configmaps", bearer); resp.code != http.StatusOK {
			return fmt.Errorf("%d %s", resp.code, resp.body)
		}
		return nil
	})
	// The token is the caller's identity at the apiserver.
	resp := get(t, r, base+"/secrets", bearer)
	require.Equal(t, http.StatusForbidden, resp.code, resp.body)
	require.Contains(t, resp.body, "system:serviceaccount:"+ns+":host")
	// No token: steve's 401.
	resp = get(t, r, base+"/configmaps", nil)
	require.Equal(t, http.StatusUnauthorized, resp.code)
	require.Equal(t, "not authorized\n", resp.body)
	// A Rancher user is impersonated with Rancher's own credential.
	r.AddUser("token-u1:secret", "u-1")
	resp = get(t, r, base+"/configmaps", map[string]string{"Authorization": "Bearer token-u1:secret"})
	require.Equal(t, http.StatusForbidden, resp.code, resp.body)
	require.Contains(t, resp.body, `User \"u-1\"`)

	// A watch streams.
	req, err := http.NewRequest(http.MethodGet, r.URL+base+"/configmaps?watch=true", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
	client := httpClient(r)
	client.Timeout = 0
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch, err := client.Do(req.WithContext(watchCtx))
	require.NoError(t, err)
	defer func() { _ = watch.Body.Close() }()
	require.Equal(t, http.StatusOK, watch.StatusCode)
	events := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(watch.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			events <- sc.Text()
		}
		close(events)
	}()
	_, err = env.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "streamed"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			require.True(t, ok, "watch ended")
			if strings.Contains(ev, `"ADDED"`) && strings.Contains(ev, `"streamed"`) {
				return
			}
		case <-deadline:
			t.Fatal("no watch event through Rancher")
		}
	}
}

func TestRancherRotateToken(t *testing.T) {
	const name = "sim-rotate"
	r := startRancher(t, testenv.RancherOptions{SessionWait: time.Second})
	ns := newAPIService(t, name, []string{"/rotate/"}, nil)
	old := string(tunnelSecret(t, r, ns, name).Data["token"])
	first := startTunnelClient(t, r, func() string { return old }, echoHandler())
	waitSessions(t, r, name, 1)
	require.Equal(t, "/rotate/x", getSeen(t, r, "/rotate/x", nil).Path)

	require.NoError(t, r.RotateToken(name))
	secret, err := env.Client.CoreV1().Secrets(ns).Get(context.Background(), "tunnel", metav1.GetOptions{})
	require.NoError(t, err)
	fresh := string(secret.Data["token"])
	require.NotEqual(t, old, fresh)
	require.Equal(t, fresh, r.Token(name))
	waitSessions(t, r, name, 0)
	code, body := dialStatus(t, r, old)
	require.Equal(t, http.StatusUnauthorized, code)
	require.Equal(t, "failed authentication", body)
	require.Equal(t, http.StatusServiceUnavailable, get(t, r, "/rotate/x", nil).code)
	first.stop()

	startTunnelClient(t, r, func() string { return fresh }, echoHandler())
	waitSessions(t, r, name, 1)
	require.Equal(t, "/rotate/y", getSeen(t, r, "/rotate/y", nil).Path)
}

func TestRancherRestart(t *testing.T) {
	const name = "sim-restart"
	r := startRancher(t, testenv.RancherOptions{})
	ns := newAPIService(t, name, []string{"/restart/"}, nil)
	token := string(tunnelSecret(t, r, ns, name).Data["token"])
	c := startTunnelClient(t, r, func() string { return token }, echoHandler())
	waitSessions(t, r, name, 1)
	require.Equal(t, "/restart/a", getSeen(t, r, "/restart/a", nil).Path)
	url := r.URL

	require.NoError(t, r.Restart())
	require.Equal(t, url, r.URL)
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := c.connects.Load(); n < 2 {
			return fmt.Errorf("%d connects", n)
		}
		return nil
	})
	waitSessions(t, r, name, 1)
	require.Equal(t, "/restart/b", getSeen(t, r, "/restart/b", nil).Path)
	require.Equal(t, token, r.Token(name), "a restart keeps the token")
}

// A Helm-installed Rancher: the tunnel goes to the internal URL with the
// internal CA, hosts use server-url; the Secret follows the Settings.
func TestRancherSeparateInternalURL(t *testing.T) {
	const name = "sim-internal"
	ctx := context.Background()
	r := startRancher(t, testenv.RancherOptions{SeparateInternalURL: true})
	ns := newAPIService(t, name, []string{"/internal/"}, nil)
	secret := tunnelSecret(t, r, ns, name)
	require.Equal(t, r.InternalURL+"/v3/connect", string(secret.Data["url"]))
	require.Equal(t, string(r.InternalCAPEM), string(secret.Data["ca.crt"]))
	token := string(secret.Data["token"])
	startTunnelClient(t, r, func() string { return token }, echoHandler())
	waitSessions(t, r, name, 1)
	require.Equal(t, "/internal/x", getSeen(t, r, "/internal/x", nil).Path)

	// Each listener has its own certificate.
	_, err := tls.Dial("tcp", strings.TrimPrefix(r.InternalURL, "https://"), trusting(r.CAPEM))
	require.Error(t, err)

	// Rancher rewrites the Secret when the internal Settings change; an empty
	// internal-cacerts leaves ca.crt out.
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	settings := mf.Management().V3().Setting()
	set := func(name, value string) {
		s, err := settings.Get(name, metav1.GetOptions{})
		require.NoError(t, err)
		s.Value = value
		_, err = settings.Update(s)
		require.NoError(t, err)
	}
	set(testenv.SettingInternalCACerts, "")
	testenv.Eventually(t, 10*time.Second, func() error {
		s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "tunnel", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, ok := s.Data["ca.crt"]; ok {
			return fmt.Errorf("ca.crt still there")
		}
		return nil
	})
	set(testenv.SettingInternalCACerts, string(r.InternalCAPEM))
	require.Equal(t, string(r.InternalCAPEM), string(tunnelSecretWith(t, ns, "ca.crt", string(r.InternalCAPEM)).Data["ca.crt"]))
}

func tunnelSecretWith(t *testing.T, ns, key, value string) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	testenv.Eventually(t, 10*time.Second, func() error {
		var err error
		if s, err = env.Client.CoreV1().Secrets(ns).Get(context.Background(), "tunnel", metav1.GetOptions{}); err != nil {
			return err
		}
		if string(s.Data[key]) != value {
			return fmt.Errorf("%s is %q", key, s.Data[key])
		}
		return nil
	})
	return s
}
