package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	mgmtv3ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io/v3"
)

// Names of the Rancher Settings the simulator writes.
const (
	SettingServerURL         = "server-url"
	SettingCACerts           = "cacerts"
	SettingInternalServerURL = "internal-server-url"
	SettingInternalCACerts   = "internal-cacerts"
	SettingAgentTLSMode      = "agent-tls-mode"
)

// rancherSystemNamespace is where Rancher keeps the ServiceAccounts it makes
// for APIServices (Rancher's namespace.System).
const rancherSystemNamespace = "cattle-system"

// RancherOptions shape a simulated Rancher.
type RancherOptions struct {
	// SessionWait is how long a request on an APIService's path waits for a
	// tunnel session before the 503 "Handler disconnected"; 0 means 15 s, as
	// Rancher's aggregation middleware (15 polls one second apart).
	SessionWait time.Duration
	// NoCACerts leaves the cacerts Setting empty, as for a Rancher whose
	// certificate is publicly trusted. internal-cacerts stays set (see
	// SeparateInternalURL).
	NoCACerts bool
	// SeparateInternalURL models a Rancher installed by Helm: its
	// internal-server-url is its ClusterIP Service (here a second loopback
	// listener, InternalURL) with a certificate from Rancher's own internal
	// CA (InternalCAPEM, the internal-cacerts Setting), distinct from URL and
	// CAPEM. Without it, Rancher runs as a single node (Docker install),
	// where Rancher sets internal-server-url = server-url and
	// internal-cacerts = cacerts; with NoCACerts the simulator still puts
	// CAPEM into internal-cacerts, standing in for the system trust store
	// that would verify a really public certificate.
	SeparateInternalURL bool
	// AgentTLSMode is the agent-tls-mode Setting ("strict" or
	// "system-store"); "" leaves the Setting alone.
	AgentTLSMode string
}

// Rancher simulates the parts of a real Rancher server that the operator
// and the hosts meet, behaving as Rancher does (rancher/rancher,
// rancher/steve, rancher/remotedialer), failures included:
//
//   - Settings: server-url, cacerts, internal-server-url, internal-cacerts and
//     (when asked) agent-tls-mode are written at start.
//   - Rancher's apiservice controller: for every management.cattle.io/v3
//     APIService it makes the ServiceAccount <name>-api-service in
//     cattle-system (owned by the APIService), sets
//     status.serviceAccountName/Namespace and, when spec.secretName and
//     spec.secretNamespace are set, writes that Secret (owned by the
//     APIService, as wrangler's apply does) with url =
//     <internal-server-url>/v3/connect, token = base64(sha256(the
//     ServiceAccount's token)) and ca.crt = internal-cacerts (the key is left
//     out when that Setting is empty). The test cluster has no token
//     controller, so the simulator fills the ServiceAccount's token Secret
//     itself. It rewrites the APIService's Secret whenever any of that
//     changes (Rancher re-runs on server-url changes; the simulator also on
//     internal-server-url and internal-cacerts), and deletes what it made
//     when the APIService goes.
//   - /v3/connect: the real remotedialer.Server. A client is accepted when its
//     "Authorization: Bearer" token is the one written for an APIService; its
//     session key is stv-<APIService UID>; several clients may hold sessions
//     under one key (requests go to the oldest, as remotedialer does). Any
//     other token gets remotedialer's 401 "failed authentication".
//   - The request chain, in Rancher's order: /k8s/clusters/local is stripped
//     (Rancher's RewriteLocalCluster); a path that is not clean gets
//     gorilla/mux's 301 to the clean one; then the aggregation middleware routes
//     every spec.pathPrefixes entry (prefix) and spec.paths entry (exact) of
//     every APIService, sorted by name, rebuilt on every change; a routed
//     request waits up to SessionWait for a session, else answers 503
//     "Handler disconnected", else is proxied through the tunnel like steve's
//     ImpersonatingHandler; then steve's routes send /api, /api/*, /apis*,
//     /openapi* and /version* to the kube-apiserver the same way; then the UI:
//     "/" and "/dashboard" redirect to /dashboard/, /dashboard/* is the index
//     page, and anything else is the index page for a browser (User-Agent
//     with "mozilla", Accept empty or with "*/*") and Go's 404 for any other
//     client.
//   - Callers are who Rancher's authentication says: system:unauthenticated
//     unless their bearer token was given to AddUser. Proxying as steve does
//     it: an unauthenticated caller that sent "Authorization: Bearer X" has X
//     forwarded and no impersonation (so elemental-register's TPM/PLAIN
//     tokens reach the operator, and service-account tokens reach the
//     kube-apiserver, unchanged); any other caller is impersonated
//     (Impersonate-User/Impersonate-Group, using Rancher's own credentials
//     towards the kube-apiserver, none through a tunnel); an unauthenticated
//     caller without a token on a path starting with /api gets 401 "not
//     authorized". Impersonate-* headers from the caller are dropped;
//     X-API-URL-Prefix is set when the path starts with /k8s/clusters/<id>;
//     X-Forwarded-Proto is https. Upgrades (WebSocket, SPDY) pass through.
//
// Not modelled: Rancher's own APIs (/v1, /v3 other than /v3/connect), other
// clusters under /k8s/clusters/<id>, UI assets, peers (HA Rancher), and
// sessions of cluster agents. Run one Rancher per cluster at a time: two
// would overwrite each other's Settings and Secrets.
type Rancher struct {
	// URL is https://127.0.0.1:<port>, its server-url.
	URL string
	// CAPEM is the CA that signed the certificate of URL (the cacerts
	// Setting unless NoCACerts).
	CAPEM []byte
	// InternalURL is its internal-server-url: URL, or with
	// SeparateInternalURL a second listener.
	InternalURL string
	// InternalCAPEM is the internal-cacerts Setting: CAPEM, or with
	// SeparateInternalURL the internal listener's own CA.
	InternalCAPEM []byte

	opts     RancherOptions
	api      *rest.Config
	client   kubernetes.Interface
	services mgmtv3ctl.APIServiceController
	settings mgmtv3ctl.SettingController
	certs    map[string]tls.Certificate // listening address -> its certificate
	ctx      context.Context
	cancel   context.CancelFunc

	reconcileMu sync.Mutex

	mu      sync.Mutex
	gen     *generation
	tokens  map[string]string // token written into a Secret -> APIService name
	byName  map[string]string // APIService name -> its current token
	written map[string]writtenObjects
	users   map[string]rancherUser // bearer token -> user
	routes  []route
	stopped bool
}

type writtenObjects struct {
	secretNamespace, secretName string
}

// StartRancher writes the Settings, starts the apiservice controller and
// serves HTTPS on a free loopback port. api is Rancher's own credential to the
// kube-apiserver (it needs to manage Settings, APIServices, ServiceAccounts,
// Secrets and namespaces, and to impersonate).
func StartRancher(api *rest.Config, opts RancherOptions) (*Rancher, error) {
	if opts.SessionWait <= 0 {
		opts.SessionWait = 15 * time.Second
	}
	api = rest.CopyConfig(api)
	api.UserAgent = "simulated-rancher"
	client, err := kubernetes.NewForConfig(api)
	if err != nil {
		return nil, err
	}
	mf, err := mgmtctl.NewFactoryFromConfig(api)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Rancher{
		opts:     opts,
		api:      api,
		client:   client,
		services: mf.Management().V3().APIService(),
		settings: mf.Management().V3().Setting(),
		certs:    map[string]tls.Certificate{},
		ctx:      ctx,
		cancel:   cancel,
		tokens:   map[string]string{},
		byName:   map[string]string{},
		written:  map[string]writtenObjects{},
		users:    map[string]rancherUser{},
	}
	var listeners []net.Listener
	fail := func(err error) (*Rancher, error) {
		for _, l := range listeners {
			_ = l.Close()
		}
		cancel()
		return nil, err
	}
	external, caPEM, err := r.listen("simulated-rancher-ca")
	if err != nil {
		return fail(err)
	}
	listeners = append(listeners, external)
	r.URL, r.CAPEM = "https://"+external.Addr().String(), caPEM
	r.InternalURL, r.InternalCAPEM = r.URL, r.CAPEM
	if opts.SeparateInternalURL {
		internal, caPEM, err := r.listen("simulated-rancher-internal-ca")
		if err != nil {
			return fail(err)
		}
		listeners = append(listeners, internal)
		r.InternalURL, r.InternalCAPEM = "https://"+internal.Addr().String(), caPEM
	}
	if err := r.writeSettings(ctx); err != nil {
		return fail(err)
	}
	r.services.OnChange(ctx, "simulated-rancher-apiservice", func(name string, obj *mgmtv3.APIService) (*mgmtv3.APIService, error) {
		var err error
		if obj == nil {
			err = r.forget(ctx, name)
		} else {
			err = r.reconcile(ctx, obj)
		}
		if ctx.Err() != nil {
			return obj, nil // stopped
		}
		return obj, err
	})
	r.services.OnChange(ctx, "simulated-rancher-router", func(_ string, obj *mgmtv3.APIService) (*mgmtv3.APIService, error) {
		return obj, r.rebuildRoutes()
	})
	r.settings.OnChange(ctx, "simulated-rancher-settings", func(name string, obj *mgmtv3.Setting) (*mgmtv3.Setting, error) {
		switch name {
		case SettingServerURL, SettingInternalServerURL, SettingInternalCACerts:
			list, err := r.services.Cache().List(labels.Everything())
			if err != nil {
				return obj, err
			}
			for _, s := range list {
				r.services.Enqueue(s.Name)
			}
		}
		return obj, nil
	})
	r.serve(listeners)
	if err := mf.Start(ctx, 2); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// listen opens a loopback listener with a certificate from a new CA.
func (r *Rancher) listen(caName string) (net.Listener, []byte, error) {
	ca, err := newTestCA(caName)
	if err != nil {
		return nil, nil, err
	}
	certPEM, keyPEM, err := ca.serving()
	if err != nil {
		return nil, nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	r.certs[l.Addr().String()] = cert
	return l, ca.PEM, nil
}

func (r *Rancher) writeSettings(ctx context.Context) error {
	values := map[string]string{
		SettingServerURL:         r.URL,
		SettingCACerts:           string(r.CAPEM),
		SettingInternalServerURL: r.InternalURL,
		SettingInternalCACerts:   string(r.InternalCAPEM),
	}
	if r.opts.NoCACerts {
		values[SettingCACerts] = ""
	}
	if r.opts.AgentTLSMode != "" {
		values[SettingAgentTLSMode] = r.opts.AgentTLSMode
	}
	for name, value := range values {
		if err := r.setSetting(ctx, name, value); err != nil {
			return err
		}
	}
	return nil
}

func (r *Rancher) setSetting(_ context.Context, name, value string) error {
	s, err := r.settings.Get(name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = r.settings.Create(&mgmtv3.Setting{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value})
		return err
	}
	if err != nil {
		return err
	}
	if s.Value == value {
		return nil
	}
	s = s.DeepCopy()
	s.Value = value
	_, err = r.settings.Update(s)
	return err
}

func (r *Rancher) setting(name string) string {
	s, err := r.settings.Cache().Get(name)
	if err != nil {
		return ""
	}
	return s.Effective()
}

// serviceAccountName is Rancher's <APIService name>-api-service (Rancher
// shortens names past 63 characters with a hash; tests use short names).
func serviceAccountName(apiService string) string { return apiService + "-api-service" }

func serviceAccountTokenSecretName(apiService string) string {
	return serviceAccountName(apiService) + "-token"
}

// reconcile is Rancher's apiservice controller for one APIService.
func (r *Rancher) reconcile(ctx context.Context, obj *mgmtv3.APIService) error {
	r.reconcileMu.Lock()
	defer r.reconcileMu.Unlock()
	owner := metav1.OwnerReference{
		APIVersion: mgmtv3.SchemeGroupVersion.String(), Kind: "APIService",
		Name: obj.Name, UID: obj.UID, Controller: ptrTo(true),
	}
	if err := r.ensureNamespace(ctx, rancherSystemNamespace); err != nil {
		return err
	}
	sa, err := r.ensureServiceAccount(ctx, obj.Name, owner)
	if err != nil {
		return err
	}
	if obj.Status.ServiceAccountName != sa.Name || obj.Status.ServiceAccountNamespace != sa.Namespace {
		obj = obj.DeepCopy()
		obj.Status.ServiceAccountName, obj.Status.ServiceAccountNamespace = sa.Name, sa.Namespace
		if _, err := r.services.UpdateStatus(obj); err != nil {
			return err
		}
	}
	if obj.Spec.SecretName == "" || obj.Spec.SecretNamespace == "" {
		return nil
	}
	saToken, err := r.serviceAccountToken(ctx, obj.Name, sa, false)
	if err != nil {
		return err
	}
	token := hashToken(saToken)
	r.setToken(obj.Name, token)

	internalURL := r.setting(SettingInternalServerURL)
	if internalURL == "" {
		return nil
	}
	data := map[string][]byte{
		"token": []byte(token),
		"url":   []byte(internalURL + "/v3/connect"),
	}
	if ca := r.setting(SettingInternalCACerts); ca != "" {
		data["ca.crt"] = []byte(ca)
	}
	if err := r.writeSecret(ctx, obj.Spec.SecretNamespace, obj.Spec.SecretName, owner, data); err != nil {
		return err
	}
	r.mu.Lock()
	r.written[obj.Name] = writtenObjects{secretNamespace: obj.Spec.SecretNamespace, secretName: obj.Spec.SecretName}
	r.mu.Unlock()
	return nil
}

// hashToken is what Rancher writes for an APIService: the base64 of the
// sha256 of its ServiceAccount's token.
func hashToken(saToken []byte) string {
	sum := sha256.Sum256(saToken)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func ptrTo[T any](v T) *T { return &v }

func (r *Rancher) ensureNamespace(ctx context.Context, name string) error {
	_, err := r.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (r *Rancher) ensureServiceAccount(ctx context.Context, apiService string, owner metav1.OwnerReference) (*corev1.ServiceAccount, error) {
	sas := r.client.CoreV1().ServiceAccounts(rancherSystemNamespace)
	sa, err := sas.Get(ctx, serviceAccountName(apiService), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Name: serviceAccountName(apiService), Namespace: rancherSystemNamespace,
			OwnerReferences: []metav1.OwnerReference{owner},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		return nil, err
	}
	if len(sa.OwnerReferences) != 1 || sa.OwnerReferences[0].UID != owner.UID {
		// A ServiceAccount left by an earlier APIService of the same name.
		sa = sa.DeepCopy()
		sa.OwnerReferences = []metav1.OwnerReference{owner}
		return sas.Update(ctx, sa, metav1.UpdateOptions{})
	}
	return sa, nil
}

// serviceAccountToken returns the token of the ServiceAccount's token
// Secret, making the Secret first if needed (Rancher's
// EnsureSecretForServiceAccount). The test cluster has no
// kube-controller-manager to fill such a Secret, so the simulator plays its
// token controller with a random token; rotate writes a new one.
func (r *Rancher) serviceAccountToken(ctx context.Context, apiService string, sa *corev1.ServiceAccount, rotate bool) ([]byte, error) {
	secrets := r.client.CoreV1().Secrets(rancherSystemNamespace)
	name := serviceAccountTokenSecretName(apiService)
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		tok, err := randomToken()
		if err != nil {
			return nil, err
		}
		s, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: rancherSystemNamespace,
				Annotations: map[string]string{
					corev1.ServiceAccountNameKey: sa.Name,
					corev1.ServiceAccountUIDKey:  string(sa.UID),
				},
			},
			Type: corev1.SecretTypeServiceAccountToken,
			Data: map[string][]byte{corev1.ServiceAccountTokenKey: tok},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		return s.Data[corev1.ServiceAccountTokenKey], nil
	}
	if err != nil {
		return nil, err
	}
	if !rotate && len(s.Data[corev1.ServiceAccountTokenKey]) > 0 && s.Annotations[corev1.ServiceAccountUIDKey] == string(sa.UID) {
		return s.Data[corev1.ServiceAccountTokenKey], nil
	}
	// A new token: rotation, or a Secret of an earlier ServiceAccount.
	tok, err := randomToken()
	if err != nil {
		return nil, err
	}
	s = s.DeepCopy()
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[corev1.ServiceAccountNameKey] = sa.Name
	s.Annotations[corev1.ServiceAccountUIDKey] = string(sa.UID)
	s.Data = map[string][]byte{corev1.ServiceAccountTokenKey: tok}
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		return nil, err
	}
	return tok, nil
}

func randomToken() ([]byte, error) {
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return []byte(base64.RawURLEncoding.EncodeToString(b)), nil
}

func (r *Rancher) writeSecret(ctx context.Context, ns, name string, owner metav1.OwnerReference, data map[string][]byte) error {
	secrets := r.client.CoreV1().Secrets(ns)
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, OwnerReferences: []metav1.OwnerReference{owner}},
			Data:       data,
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if sameData(s.Data, data) && len(s.OwnerReferences) == 1 && s.OwnerReferences[0].UID == owner.UID {
		return nil
	}
	s = s.DeepCopy()
	s.Data = data
	s.OwnerReferences = []metav1.OwnerReference{owner}
	_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
	return err
}

func sameData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}

// forget is what happens when an APIService is deleted: Rancher's apply
// removes the objects it made for it (and garbage collection would, through
// their owner references); its token stops being accepted. Sessions already
// open stay, as in Rancher.
func (r *Rancher) forget(ctx context.Context, name string) error {
	r.reconcileMu.Lock()
	defer r.reconcileMu.Unlock()
	r.mu.Lock()
	if tok, ok := r.byName[name]; ok {
		delete(r.tokens, tok)
		delete(r.byName, name)
	}
	w, wrote := r.written[name]
	delete(r.written, name)
	r.mu.Unlock()
	var errs []error
	del := func(err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if wrote {
		del(r.client.CoreV1().Secrets(w.secretNamespace).Delete(ctx, w.secretName, metav1.DeleteOptions{}))
	}
	del(r.client.CoreV1().Secrets(rancherSystemNamespace).Delete(ctx, serviceAccountTokenSecretName(name), metav1.DeleteOptions{}))
	del(r.client.CoreV1().ServiceAccounts(rancherSystemNamespace).Delete(ctx, serviceAccountName(name), metav1.DeleteOptions{}))
	return errors.Join(errs...)
}

func (r *Rancher) setToken(apiService, token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.byName[apiService]; ok && old != token {
		delete(r.tokens, old)
	}
	r.byName[apiService] = token
	r.tokens[token] = apiService
}

// authorize is the /v3/connect authorizer: the bearer token must be the one
// written for an APIService that still exists; the session key is
// stv-<its UID>.
func (r *Rancher) authorize(token string) (key string, ok bool) {
	if token == "" {
		return "", false
	}
	r.mu.Lock()
	name, found := r.tokens[token]
	r.mu.Unlock()
	if !found {
		return "", false
	}
	obj, err := r.services.Cache().Get(name)
	if err != nil {
		return "", false
	}
	return sessionKey(obj), true
}

func sessionKey(obj *mgmtv3.APIService) string { return "stv-" + string(obj.UID) }

// rebuildRoutes rebuilds the aggregation routes from every APIService,
// sorted by name: each path prefix, then each exact path.
func (r *Rancher) rebuildRoutes() error {
	list, err := r.services.Cache().List(labels.Everything())
	if err != nil {
		return err
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	var routes []route
	for _, s := range list {
		for _, p := range s.Spec.PathPrefixes {
			routes = append(routes, route{prefix: p, key: sessionKey(s)})
		}
		for _, p := range s.Spec.Paths {
			routes = append(routes, route{path: p, key: sessionKey(s)})
		}
	}
	r.mu.Lock()
	r.routes = routes
	r.mu.Unlock()
	return nil
}

// AddUser makes token a Rancher API token of user (with groups, plus
// system:authenticated): requests bearing it are impersonated as that user
// instead of having the token forwarded.
func (r *Rancher) AddUser(token, user string, groups ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.users[token] = rancherUser{name: user, groups: append(append([]string{}, groups...), "system:authenticated")}
}

// Token is the token Rancher currently accepts for the APIService ("" if it
// has not written one yet).
func (r *Rancher) Token(apiService string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byName[apiService]
}

// RotateToken gives the APIService's ServiceAccount a new token and writes
// the new hash into the APIService's Secret before returning. The old token is
// refused from then on, and tunnel sessions opened with it are closed (as a
// Rancher restart with a new token would).
func (r *Rancher) RotateToken(apiService string) error {
	ctx := r.ctx
	obj, err := r.services.Get(apiService, metav1.GetOptions{})
	if err != nil {
		return err
	}
	r.reconcileMu.Lock()
	sa, err := r.ensureServiceAccount(ctx, apiService, metav1.OwnerReference{
		APIVersion: mgmtv3.SchemeGroupVersion.String(), Kind: "APIService",
		Name: obj.Name, UID: obj.UID, Controller: ptrTo(true),
	})
	if err == nil {
		_, err = r.serviceAccountToken(ctx, apiService, sa, true)
	}
	r.reconcileMu.Unlock()
	if err != nil {
		return err
	}
	if err := r.reconcile(ctx, obj); err != nil {
		return err
	}
	token := r.Token(apiService)
	r.mu.Lock()
	g := r.gen
	r.mu.Unlock()
	if g != nil {
		g.closeTunnels(func(t *tunnel) bool { return t.key == sessionKey(obj) && t.token != token })
	}
	return nil
}

func (r *Rancher) keyOf(apiService string) (string, error) {
	obj, err := r.services.Cache().Get(apiService)
	if err != nil {
		return "", err
	}
	return sessionKey(obj), nil
}

// Sessions is the number of tunnel clients connected for the APIService.
func (r *Rancher) Sessions(apiService string) int {
	key, err := r.keyOf(apiService)
	if err != nil {
		return 0
	}
	r.mu.Lock()
	g := r.gen
	r.mu.Unlock()
	if g == nil {
		return 0
	}
	return g.sessions(key)
}

// HasSession says whether a request routed to the APIService would find a
// session now (what Rancher's aggregation middleware polls).
func (r *Rancher) HasSession(apiService string) bool {
	key, err := r.keyOf(apiService)
	if err != nil {
		return false
	}
	r.mu.Lock()
	g := r.gen
	r.mu.Unlock()
	return g != nil && g.remote.HasSession(key)
}

// WaitSessions waits until the APIService has exactly n tunnel sessions
// (and, for n > 0, routing sees one), or ctx ends.
func (r *Rancher) WaitSessions(ctx context.Context, apiService string, n int) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		got := r.Sessions(apiService)
		if got == n && (n == 0 || r.HasSession(apiService)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d sessions of APIService %s, have %d: %w", n, apiService, got, ctx.Err())
		case <-t.C:
		}
	}
}

// Restart is a Rancher restart: every session and connection is dropped
// and a fresh tunnel server serves again on the same addresses. Tokens stay
// (they live in the cluster), so clients that dial again are accepted.
func (r *Rancher) Restart() error {
	r.mu.Lock()
	g := r.gen
	r.gen = nil
	stopped := r.stopped
	r.mu.Unlock()
	if stopped {
		return fmt.Errorf("simulated Rancher is stopped")
	}
	if g != nil {
		g.close()
	}
	var listeners []net.Listener
	for addr := range r.certs {
		var l net.Listener
		var err error
		for i := 0; i < 100; i++ {
			if l, err = net.Listen("tcp", addr); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
			return fmt.Errorf("listening again on %s: %w", addr, err)
		}
		listeners = append(listeners, l)
	}
	r.serve(listeners)
	return nil
}

// Stop stops serving and the controllers. Objects it wrote stay.
func (r *Rancher) Stop() {
	r.mu.Lock()
	g := r.gen
	r.gen = nil
	r.stopped = true
	r.mu.Unlock()
	r.cancel()
	if g != nil {
		g.close()
	}
}

// HTTPClient trusts CAPEM, as a host given Rancher's cacerts does.
func (r *Rancher) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.CAPEM)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
