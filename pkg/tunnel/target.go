// Package tunnel serves the registration endpoint through Rancher's APIService
// tunnel: Rancher writes url, token and ca.crt into a Secret named by our
// APIService; every replica dials <url> (Rancher's /v3/connect) as a
// remotedialer client, and Rancher proxies each /elemental/* request to us
// over that WebSocket. Hosts only ever see Rancher's URL and certificate.
package tunnel

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The Secret keys Rancher's apiservice controller writes.
const (
	KeyURL   = "url"
	KeyToken = "token"
	KeyCA    = "ca.crt"
)

// target is where and how to dial, read from the Secret.
type target struct {
	url   string // ws:// or wss://
	token string
	// ca is Rancher's internal CA. Rancher writes the key only when it has
	// one; present but empty means "do not verify", as steve's client reads it.
	ca        []byte
	caPresent bool
}

func (t target) equal(o target) bool {
	return t.url == o.url && t.token == o.token && t.caPresent == o.caPresent && bytes.Equal(t.ca, o.ca)
}

// host is the URL without credentials or path, for logs (never the token).
func (t target) host() string {
	u, err := url.Parse(t.url)
	if err != nil {
		return "<invalid url>"
	}
	return u.Host
}

// parseTarget reads the Secret. A nil Secret or a missing url/token is not an
// error but a wait: Rancher writes them once the APIService is reconciled.
func parseTarget(s *corev1.Secret) (target, string) {
	if s == nil {
		return target{}, "the Secret does not exist yet (Rancher writes it for the APIService)"
	}
	raw := strings.TrimSpace(string(s.Data[KeyURL]))
	tok := strings.TrimSpace(string(s.Data[KeyToken]))
	switch {
	case raw == "" && tok == "":
		return target{}, "the Secret has no url and no token yet"
	case raw == "":
		return target{}, "the Secret has no url yet"
	case tok == "":
		return target{}, "the Secret has no token yet"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return target{}, fmt.Sprintf("the Secret's url %q is not a URL", raw)
	}
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	case "http":
		u.Scheme = "ws"
	case "wss", "ws":
	default:
		return target{}, fmt.Sprintf("the Secret's url has scheme %q; want https", u.Scheme)
	}
	ca, present := s.Data[KeyCA]
	if len(bytes.TrimSpace(ca)) > 0 {
		if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(ca) {
			return target{}, "the Secret's ca.crt holds no PEM certificate"
		}
	}
	return target{url: u.String(), token: tok, ca: ca, caPresent: present}, ""
}

// tlsConfig trusts the system roots plus Rancher's CA; a present but empty
// ca.crt disables verification (Rancher's convention for "no internal CA").
func (t target) tlsConfig() *tls.Config {
	if t.caPresent && len(bytes.TrimSpace(t.ca)) == 0 {
		return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // Rancher asked for it: empty ca.crt
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if len(t.ca) > 0 {
		pool.AppendCertsFromPEM(t.ca)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
