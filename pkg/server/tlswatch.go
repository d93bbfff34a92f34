package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/elemental-operator/elemental-operator/pkg/metrics"
)

// Results of elemental_operator_registration_tls_reloads_total.
const (
	reloadLoaded  = "loaded"  // a new certificate is served
	reloadInvalid = "invalid" // the Secret changed but does not parse: the last good one stays
	reloadDeleted = "deleted" // the Secret is gone: the last good one stays (the generated one is recreated)
)

// certSource serves the registration certificate (tls.Config.GetCertificate)
// from its Secret and follows every change of it: a renewal (cert-manager) is
// served to the next connection without a restart, and a Secret that stops
// parsing or disappears keeps the last good certificate. The generated
// Secret is also kept covering this replica's registration host, and is
// recreated when deleted.
type certSource struct {
	k8s        kubernetes.Interface
	namespace  string
	name       string
	generated  bool
	baseURL    string
	current    atomic.Pointer[tlsMaterial]
	mu         sync.Mutex // one change at a time
	lastFailed []byte     // the tls.crt last refused, so a resync does not count it twice
}

// startCerts loads the serving certificate (creating or re-issuing the
// generated one, see loadTLS), then follows its Secret.
func startCerts(ctx context.Context, k8s kubernetes.Interface, opts Options) (*certSource, error) {
	c := &certSource{k8s: k8s, namespace: opts.Namespace, name: opts.TLSSecret, baseURL: opts.Endpoints.RegistrationURL}
	if c.name == "" {
		c.name, c.generated = GeneratedTLSSecret, true
	}
	m, err := loadTLS(ctx, k8s, opts, c.baseURL)
	if err != nil {
		return nil, err
	}
	c.current.Store(m)
	if err := c.watch(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certSource) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	m := c.current.Load()
	if m == nil {
		return nil, fmt.Errorf("no registration certificate")
	}
	return &m.cert, nil
}

func (c *certSource) config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.getCertificate}
}

func (c *certSource) log() *logrus.Entry {
	return logrus.WithField("secret", c.namespace+"/"+c.name)
}

// watch follows the one Secret (its own informer, field-selected to its
// name, so no other Secret is ever cached) until ctx ends.
func (c *certSource) watch(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(c.k8s, 0,
		informers.WithNamespace(c.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", c.name).String()
		}))
	inf := factory.Core().V1().Secrets().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onSecret(ctx, obj) },
		UpdateFunc: func(_, obj any) { c.onSecret(ctx, obj) },
		DeleteFunc: func(any) { c.onDelete(ctx) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		return fmt.Errorf("registration TLS Secret %s/%s could not be watched", c.namespace, c.name)
	}
	return nil
}

func (c *certSource) onSecret(ctx context.Context, obj any) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.current.Load(); cur != nil && bytes.Equal(cur.certPEM, s.Data[corev1.TLSCertKey]) &&
		bytes.Equal(cur.keyPEM, s.Data[corev1.TLSPrivateKeyKey]) && bytes.Equal(cur.caPEM, s.Data["ca.crt"]) {
		return // a resync, or our own write coming back
	}
	if c.generated {
		// Another replica (another --registration-url) may have re-issued it:
		// make sure it covers ours too. The write comes back as an event.
		apiCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		reissued, err := reissueForHost(apiCtx, c.k8s.CoreV1().Secrets(c.namespace), s, c.namespace, c.baseURL)
		if err != nil {
			c.log().WithError(err).Warn("re-issuing the generated registration certificate failed; serving the last good one")
			return
		}
		s = reissued
	}
	m, err := materialOf(s)
	if err != nil {
		if !bytes.Equal(c.lastFailed, s.Data[corev1.TLSCertKey]) {
			c.lastFailed = s.Data[corev1.TLSCertKey]
			metrics.RegistrationTLSReloads.WithLabelValues(reloadInvalid).Inc()
			c.log().WithError(err).Warn("the registration TLS Secret changed but is not a valid certificate and key; serving the last good one")
		}
		return
	}
	c.lastFailed = nil
	c.current.Store(m)
	metrics.RegistrationTLSReloads.WithLabelValues(reloadLoaded).Inc()
	c.log().WithFields(logrus.Fields{"serial": m.cert.Leaf.SerialNumber.Text(16), "notAfter": m.cert.Leaf.NotAfter.UTC().Format(time.RFC3339)}).
		Info("registration certificate reloaded")
}

func (c *certSource) onDelete(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	metrics.RegistrationTLSReloads.WithLabelValues(reloadDeleted).Inc()
	if !c.generated {
		c.log().Warn("the registration TLS Secret was deleted; serving the last good certificate until it is back")
		return
	}
	// Deleting the generated Secret is how an admin asks for a new CA. Every
	// replica tries; the first create wins and comes back as an event.
	gen, err := generateTLSSecret(c.namespace, nil, c.baseURL, nil)
	if err != nil {
		c.log().WithError(err).Warn("generating a new registration certificate failed")
		return
	}
	apiCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.k8s.CoreV1().Secrets(c.namespace).Create(apiCtx, gen, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		c.log().WithError(err).Warn("recreating the generated registration TLS Secret failed; serving the last good certificate")
		return
	}
	c.log().Info("the generated registration TLS Secret was deleted: created a new CA and certificate (hosts must be given the new CA)")
}
