// Package server is the registration server: HTTPS on every replica,
// stateless (all state lives in the API server), answering
// /elemental/registration/<token> with the registration YAML (plain GET) or
// the elemental-register protocol (WebSocket), see docs/contracts.md.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rancher/lasso/pkg/controller"
	"github.com/rancher/wrangler/v3/pkg/generic"
	"github.com/rancher/wrangler/v3/pkg/schemes"
	"github.com/rancher/wrangler/v3/pkg/start"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/crdwatch"
	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/register/settings"
)

// Component is the event source and user agent of the server.
const Component = "elemental-registration"

// Cache index names.
const (
	tokenIndex    = "elemental.cattle.io/registration-token"
	identityIndex = "elemental.cattle.io/inventory-identity"
)

// Options configure the server.
type Options struct {
	// Endpoints is the resolved registration mode and the URLs given on the
	// command line; with a mode that has no listener, Addr and TLSSecret are
	// unused and the server is only a handler (served through the tunnel).
	Endpoints endpoints.Static
	// Addr is the direct-mode listen address; empty: no listener.
	Addr string
	// Namespace is the operator's namespace, home of the generated TLS Secret.
	Namespace string
	// TLSSecret names a kubernetes.io/tls Secret in Namespace to serve with;
	// empty generates a CA and serving certificate shared by all replicas.
	TLSSecret string
	// MaxInFlight bounds concurrent conversations.
	MaxInFlight int
	// AgentTokenTTL is the requested lifetime of agent tokens.
	AgentTokenTTL time.Duration
	// MessageTimeout bounds each read and write; ConversationTimeout caps a
	// whole conversation from the upgrade on.
	MessageTimeout, ConversationTimeout time.Duration
	// MaxConnections bounds the open connections of every path to the
	// handler together; MaxPerSource the connections (direct listener) and
	// concurrent requests (any path) from one source address.
	MaxConnections, MaxPerSource int
	// ConversationBytes and ConversationMessages budget what a host may send
	// in one conversation, besides the per-message cap.
	ConversationBytes    int64
	ConversationMessages int
	// IdleTimeout closes idle keep-alive connections; ReadTimeout bounds
	// reading a plain request.
	IdleTimeout, ReadTimeout time.Duration
	// InventoryMaxLabels, InventoryMaxAnnotations and
	// InventoryMaxMetadataBytes cap what one registration may make an
	// inventory's labels and annotations (0: the default; negative: none).
	InventoryMaxLabels, InventoryMaxAnnotations, InventoryMaxMetadataBytes int
}

// Default limits (README "Configuration").
const (
	// DefaultConversationTimeout is the real client's deadline for the whole
	// conversation (10 s, counted from when its dial returns) plus one
	// second for the upgrade answer to reach it: the server never gives up
	// on a host that would still finish, nor holds one that gave up.
	DefaultConversationTimeout = 11 * time.Second
	DefaultMaxConnections      = 512
	DefaultMaxPerSource        = 16
	// DefaultConversationBytes is far above what the real client sends (its
	// SMBIOS and system data are tens of KiB) and low enough that MaxInFlight
	// conversations cannot hold the pod's memory limit.
	DefaultConversationBytes    = 2 << 20
	DefaultConversationMessages = 32
	DefaultIdleTimeout          = 15 * time.Second
	DefaultReadTimeout          = 10 * time.Second
)

func (o *Options) defaults() {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 64
	}
	if o.AgentTokenTTL <= 0 {
		o.AgentTokenTTL = 87600 * time.Hour
	}
	if o.MessageTimeout <= 0 {
		o.MessageTimeout = 10 * time.Second
	}
	if o.ConversationTimeout <= 0 {
		o.ConversationTimeout = DefaultConversationTimeout
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.MaxPerSource == 0 {
		o.MaxPerSource = DefaultMaxPerSource
	}
	if o.ConversationBytes <= 0 {
		o.ConversationBytes = DefaultConversationBytes
	}
	if o.ConversationMessages <= 0 {
		o.ConversationMessages = DefaultConversationMessages
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.InventoryMaxLabels == 0 {
		o.InventoryMaxLabels = DefaultInventoryMaxLabels
	}
	if o.InventoryMaxAnnotations == 0 {
		o.InventoryMaxAnnotations = DefaultInventoryMaxAnnotations
	}
	if o.InventoryMaxMetadataBytes == 0 {
		o.InventoryMaxMetadataBytes = DefaultInventoryMaxMetadataBytes
	}
}

// Server is a running registration server.
type Server struct {
	opts          Options
	registrations elementalv1ctl.MachineRegistrationCache
	inventories   elementalv1ctl.MachineInventoryCache
	miClient      inventoryClient
	settings      atomic.Pointer[settings.Reader] // once the Setting kind is served
	k8s           kubernetes.Interface
	recorder      record.EventRecorder
	locks         *keyLock
	inFlight      chan struct{}
	certs         *certSource
	http          *http.Server
	listener      net.Listener
	// identityKey keys the identity-hash label (identitykey.go).
	identityKey []byte
	// limits are read on every connection and conversation; conns counts
	// open connections, sources concurrent requests per source address.
	limits  atomic.Pointer[limits]
	conns   tally
	sources tally
	// quota admits new inventories under spec.limits; refusalEvents
	// rate-limits the Events of refusals by a bound.
	quota         quota
	refusalEvents eventGate
}

// endpoints is what hosts are given now (Settings are read from the cache).
func (s *Server) endpoints() endpoints.Endpoints {
	var directCA string
	if s.certs != nil {
		directCA = string(s.certs.current.Load().caPEM)
	}
	var r settings.Reader
	if p := s.settings.Load(); p != nil {
		r = *p
	}
	return endpoints.Resolve(s.opts.Endpoints, endpoints.FromReader(r), directCA)
}

// Start builds the caches (its own, independent of leader election), waits
// for them, obtains the serving certificate and starts listening. A bind
// failure is returned, not logged.
func Start(ctx context.Context, cfg *rest.Config, opts Options) (*Server, error) {
	opts.defaults()
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = Component
	// No client-side rate limit: MaxInFlight already bounds the work in
	// flight (three requests per new host), and a token bucket would only
	// add latency to registrations; the API server's own fairness protects it.
	cfg.QPS, cfg.Burst, cfg.RateLimiter = -1, 0, nil
	scf, err := controller.NewSharedControllerFactoryFromConfigWithOptions(cfg, schemes.All, nil)
	if err != nil {
		return nil, err
	}
	fopts := &generic.FactoryOptions{SharedControllerFactory: scf}
	ef, err := elementalctl.NewFactoryFromConfigWithOptions(cfg, fopts)
	if err != nil {
		return nil, err
	}
	// Built-in kinds (ServiceAccounts, TokenRequests, Secrets, RBAC, Events)
	// speak protobuf, which the API server decodes and encodes for much less
	// CPU than JSON. Custom resources have no protobuf form and stay JSON.
	coreCfg := rest.CopyConfig(cfg)
	coreCfg.ContentType = runtime.ContentTypeProtobuf
	coreCfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	k8s, err := kubernetes.NewForConfig(coreCfg)
	if err != nil {
		return nil, err
	}
	// The same shared controller as the inventory cache, with contexts.
	miClient := inventoryClient{scf.ForResourceKind(elementalv1.SchemeGroupVersion.WithResource("machineinventories"),
		"MachineInventory", true).Client()}
	s := &Server{
		opts:          opts,
		registrations: ef.Elemental().V1beta1().MachineRegistration().Cache(),
		inventories:   ef.Elemental().V1beta1().MachineInventory().Cache(),
		miClient:      miClient,
		k8s:           k8s,
		locks:         newKeyLock(),
		inFlight:      make(chan struct{}, opts.MaxInFlight),
	}
	// Bounded on its own: one read (and at most one create) that a shutdown
	// during start-up need not interrupt.
	kctx, kcancel := context.WithTimeout(context.Background(), 30*time.Second)
	s.identityKey, err = loadIdentityKey(kctx, k8s, opts.Namespace)
	kcancel()
	if err != nil {
		return nil, err
	}
	s.limits.Store(&limits{maxConnections: opts.MaxConnections, maxPerSource: opts.MaxPerSource,
		conversationBytes: opts.ConversationBytes, conversationMessages: opts.ConversationMessages,
		conversationTimeout: opts.ConversationTimeout,
		meta:                metaCaps{labels: opts.InventoryMaxLabels, annotations: opts.InventoryMaxAnnotations, bytes: opts.InventoryMaxMetadataBytes}})
	s.registrations.AddIndexer(tokenIndex, func(mr *elementalv1.MachineRegistration) ([]string, error) {
		if mr.Status.RegistrationToken == "" {
			return nil, nil
		}
		return []string{mr.Status.RegistrationToken}, nil
	})
	s.inventories.AddIndexer(identityIndex, func(mi *elementalv1.MachineInventory) ([]string, error) {
		var keys []string
		if mi.Spec.TPMHash != "" {
			keys = append(keys, "tpm/"+mi.Spec.TPMHash)
		}
		if mi.Spec.MachineHash != "" {
			keys = append(keys, "plain/"+mi.Spec.MachineHash)
		}
		return keys, nil
	})
	s.inventories.AddIndexer(registrationIndex, inventoryRegistration)
	starters := []start.Starter{ef}
	// Without Rancher there is no Setting kind: its cache would never sync.
	served, err := settings.Served(k8s.Discovery())
	if err != nil {
		return nil, fmt.Errorf("discovering Rancher settings: %w", err)
	}
	settingsCache := func() (*settings.Reader, start.Starter, error) {
		mf, err := mgmtctl.NewFactoryFromConfigWithOptions(cfg, fopts)
		if err != nil {
			return nil, nil, err
		}
		return &settings.Reader{Cache: mf.Management().V3().Setting().Cache()}, mf, nil
	}
	if served {
		r, mf, err := settingsCache()
		if err != nil {
			return nil, err
		}
		s.settings.Store(r)
		starters = append(starters, mf)
	}
	if err := start.All(ctx, 1, starters...); err != nil {
		return nil, fmt.Errorf("starting registration caches: %w", err)
	}
	if !served {
		// Rancher installed later: hosts are given its URLs from then on.
		if err := crdwatch.WhenServed(ctx, cfg, crdwatch.RancherSettings, func(ctx context.Context) {
			r, mf, err := settingsCache()
			if err == nil {
				err = start.All(ctx, 1, mf)
			}
			if err != nil {
				logrus.WithError(err).Error("registration server: watching Rancher Settings failed")
				return
			}
			s.settings.Store(r)
			logrus.Info("registration server: Rancher Settings are served now")
		}); err != nil {
			return nil, err
		}
	}

	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k8s.CoreV1().Events("")})
	s.recorder = broadcaster.NewRecorder(schemes.All, corev1.EventSource{Component: Component})

	if !opts.Endpoints.Mode.Listener() || opts.Addr == "" {
		logrus.WithField("mode", opts.Endpoints.Mode).Info("registration server has no listener of its own: it is served through Rancher's tunnel")
		return s, nil
	}
	if s.certs, err = startCerts(ctx, k8s, opts); err != nil {
		return nil, err
	}
	if s.listener, err = net.Listen("tcp", opts.Addr); err != nil {
		return nil, fmt.Errorf("listening on %s: %w", opts.Addr, err)
	}
	s.http = s.NewHTTPServer(s)
	s.http.TLSConfig = s.certs.config()
	limited := s.LimitListener(s.listener, s.http.TLSConfig)
	go func() {
		if err := s.http.ServeTLS(limited, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logrus.WithError(err).WithField("addr", opts.Addr).Error("registration server stopped")
		}
	}()
	logrus.WithField("addr", s.listener.Addr().String()).Info("registration server listening")
	return s, nil
}

// Addr is the bound address (useful with port 0); "" without a listener.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// CACert is the PEM CA of the direct listener's certificate; "" without one.
func (s *Server) CACert() string {
	if s.certs == nil {
		return ""
	}
	return string(s.certs.current.Load().caPEM)
}

// Stop closes the listener and waits briefly for conversations to end.
func (s *Server) Stop() {
	if s.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
}
