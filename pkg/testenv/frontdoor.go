package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"k8s.io/client-go/rest"
)

// RancherFrontDoor is the part of Rancher hosts talk to: one HTTPS address
// (the server-url Setting) that proxies /k8s/clusters/local to the
// kube-apiserver, passing the host's bearer token through, and /elemental to
// the operator's registration server (capi-rancher.md §10). Agents behind it
// use exactly the URL and CA the Config reply gave them.
type RancherFrontDoor struct {
	URL string
	// CAPEM belongs in the cacerts Setting.
	CAPEM []byte
	srv   *http.Server
}

// StartRancherFrontDoor serves on a free loopback port. registration is the
// registration server's base URL (https://host:port).
func StartRancherFrontDoor(api *rest.Config, registration string) (*RancherFrontDoor, error) {
	apiURL, err := url.Parse(api.Host)
	if err != nil {
		return nil, err
	}
	regURL, err := url.Parse(registration)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(api.CAData) {
		return nil, fmt.Errorf("the apiserver config has no CA")
	}
	// Only the host's own credential reaches the apiserver: no client
	// certificate of ours, so per-host RBAC is what is exercised.
	toAPI := httputil.NewSingleHostReverseProxy(apiURL)
	toAPI.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	toAPI.FlushInterval = -1 // watches stream
	toRegistration := httputil.NewSingleHostReverseProxy(regURL)
	// Rancher's ingress reaches the operator's Service inside the cluster;
	// that hop's certificate is not what these tests are about.
	toRegistration.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec
	const prefix = "/k8s/clusters/local"
	mux := http.NewServeMux()
	mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.TrimPrefix(r.URL.Path, prefix)
		r.URL.RawPath = ""
		toAPI.ServeHTTP(w, r)
	})
	mux.Handle("/elemental/", toRegistration)

	ca, err := newTestCA("rancher-front-door")
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := ca.serving()
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &RancherFrontDoor{URL: "https://" + l.Addr().String(), CAPEM: ca.PEM, srv: &http.Server{Handler: mux}}
	go func() { _ = d.srv.Serve(tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})) }()
	return d, nil
}

// Stop closes the listener and every connection.
func (d *RancherFrontDoor) Stop() { _ = d.srv.Close() }
