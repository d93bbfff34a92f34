package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// GeneratedTLSSecret holds the generated CA and serving certificate, shared
// by every replica through the API server.
const GeneratedTLSSecret = "elemental-registration-tls"

type tlsMaterial struct {
	cert  tls.Certificate
	caPEM []byte // what hosts receive as ca-cert; empty if publicly trusted
	// certPEM and keyPEM are the Secret's bytes, to tell a change from a resync.
	certPEM, keyPEM []byte
}

// materialOf parses a kubernetes.io/tls Secret.
func materialOf(s *corev1.Secret) (*tlsMaterial, error) {
	cert, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &tlsMaterial{cert: cert, caPEM: s.Data["ca.crt"], certPEM: s.Data[corev1.TLSCertKey], keyPEM: s.Data[corev1.TLSPrivateKeyKey]}, nil
}

// caKeyKey holds the generated CA's private key, so a new serving
// certificate (new hostname) can be signed by the CA hosts already trust.
const caKeyKey = "ca.key"

// loadTLS reads the configured Secret, or the generated one, creating it on
// first use and re-issuing its serving certificate when the registration
// hostname is not in it. Racing replicas converge on whichever write won.
func loadTLS(ctx context.Context, k8s kubernetes.Interface, opts Options, baseURL string) (*tlsMaterial, error) {
	name := opts.TLSSecret
	if name == "" {
		name = GeneratedTLSSecret
	}
	secrets := k8s.CoreV1().Secrets(opts.Namespace)
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && opts.TLSSecret == "" {
		gen, genErr := generateTLSSecret(opts.Namespace, nil, baseURL, nil)
		if genErr != nil {
			return nil, genErr
		}
		if s, err = secrets.Create(ctx, gen, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			s, err = secrets.Get(ctx, name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("registration TLS Secret %s/%s: %w", opts.Namespace, name, err)
	}
	if opts.TLSSecret == "" {
		if s, err = reissueForHost(ctx, secrets, s, opts.Namespace, baseURL); err != nil {
			return nil, fmt.Errorf("registration TLS Secret %s/%s: %w", opts.Namespace, name, err)
		}
	}
	m, err := materialOf(s)
	if err != nil {
		return nil, fmt.Errorf("registration TLS Secret %s/%s: %w", opts.Namespace, name, err)
	}
	return m, nil
}

// reissueForHost signs a new serving certificate with the same CA when the
// generated one does not cover baseURL's host (the registration URL moved).
// The hosts the old certificate covered stay in the new one: replicas
// started with different URLs (a rolling change of --registration-url)
// converge on one certificate instead of re-issuing it in turn.
func reissueForHost(ctx context.Context, secrets typedcorev1.SecretInterface, s *corev1.Secret, namespace, baseURL string) (*corev1.Secret, error) {
	host := hostOf(baseURL)
	if host == "" || covers(s.Data[corev1.TLSCertKey], host) {
		return s, nil
	}
	ca, err := parseCA(s.Data["ca.crt"], s.Data[caKeyKey])
	if err != nil {
		logrus.WithError(err).WithField("host", host).Warn("the generated registration certificate does not cover the registration host " +
			"and cannot be re-signed by its CA (created by an older version, without ca.key): delete Secret " +
			namespace + "/" + GeneratedTLSSecret + " to generate a new CA, then re-issue the hosts' registration configuration")
		return s, nil
	}
	gen, err := generateTLSSecret(namespace, previousHosts(s.Data[corev1.TLSCertKey], namespace), baseURL, ca)
	if err != nil {
		return nil, err
	}
	out := s.DeepCopy()
	out.Data = gen.Data
	updated, err := secrets.Update(ctx, out, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		// Another replica re-issued it first: use theirs.
		return secrets.Get(ctx, s.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, err
	}
	logrus.WithField("host", host).Info("re-issued the generated registration certificate for a new registration host (same CA)")
	return updated, nil
}

func hostOf(baseURL string) string {
	u, err := url.Parse(baseURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// covers says whether the PEM certificate is valid for host.
func covers(certPEM []byte, host string) bool {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	return err == nil && cert.VerifyHostname(host) == nil
}

type caPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func parseCA(certPEM, keyPEM []byte) (*caPair, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("no CA key stored")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	return &caPair{cert: cert, key: key, pem: certPEM}, nil
}

func newCA() (*caPair, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "elemental-registration-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	return &caPair{cert: ca, key: caKey, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}, nil
}

// maxPreviousHosts bounds the hosts a re-issued certificate carries over.
const maxPreviousHosts = 16

// previousHosts are the names and addresses a generated certificate covers
// besides the built-in ones (the registration hosts it was issued for),
// the most recent maxPreviousHosts of them.
func previousHosts(certPEM []byte, namespace string) []string {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	builtin := map[string]bool{}
	for _, n := range builtinNames(namespace) {
		builtin[n] = true
	}
	for _, ip := range builtinIPs() {
		builtin[ip.String()] = true
	}
	var out []string
	for _, n := range cert.DNSNames {
		if !builtin[n] {
			out = append(out, n)
		}
	}
	for _, ip := range cert.IPAddresses {
		if !builtin[ip.String()] {
			out = append(out, ip.String())
		}
	}
	if len(out) > maxPreviousHosts {
		out = out[len(out)-maxPreviousHosts:]
	}
	return out
}

func builtinNames(namespace string) []string {
	return []string{"localhost", "elemental-operator", "elemental-operator." + namespace,
		"elemental-operator." + namespace + ".svc", "elemental-operator." + namespace + ".svc.cluster.local"}
}

func builtinIPs() []net.IP { return []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")} }

// generateTLSSecret makes a serving certificate for the in-cluster names,
// the previous hosts and baseURL's host, signed by ca (a new CA when nil).
func generateTLSSecret(namespace string, previous []string, baseURL string, ca *caPair) (*corev1.Secret, error) {
	if ca == nil {
		var err error
		if ca, err = newCA(); err != nil {
			return nil, err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "elemental-registration"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     builtinNames(namespace),
		IPAddresses:  builtinIPs(),
	}
	for _, host := range append(previous, hostOf(baseURL)) {
		if host == "" {
			continue
		}
		if ip := net.ParseIP(host); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: GeneratedTLSSecret, Namespace: namespace,
			Labels: map[string]string{elementalv1.ManagedLabel: "true"}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			"ca.crt":                ca.pem,
			caKeyKey:                pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKeyDER}),
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		},
	}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}
