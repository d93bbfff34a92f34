package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
)

const registrationPath = "/elemental/registration/"

var upgrader = websocket.Upgrader{
	HandshakeTimeout: 5 * time.Second,
	// The real client sends no Origin; any is accepted.
	CheckOrigin: func(*http.Request) bool { return true },
}

// text answers with a short text/plain body (kept under 1 KiB: the real
// client keeps only that much of a failed handshake).
func text(w http.ResponseWriter, code int, msg string) {
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}

// ServeHTTP routes /elemental/registration/<token>.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Concurrent requests per source: through the tunnel every request
	// arrives on Rancher's connections, so this is where one source is held
	// to its share (the direct listener already limits its connections).
	// Not an address (a tunnelled request without X-Forwarded-For): not limited
	// per source, or every such request would share one source's share.
	source := sourceHost(r.RemoteAddr)
	if net.ParseIP(source) == nil {
		source = ""
	}
	if reason := s.sources.acquire(source, 0, s.limits.Load().maxPerSource); reason != "" {
		refused(reason)
		logrus.WithFields(logrus.Fields{"remote": r.RemoteAddr, "reason": reason}).Debug("registration request refused")
		writeRefusal(w, reason, source)
		return
	}
	defer s.sources.release(source)
	token, ok := strings.CutPrefix(r.URL.Path, registrationPath)
	token = strings.TrimSuffix(token, "/")
	if !ok || token == "" || strings.Contains(token, "/") {
		text(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		text(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	upgrade := websocket.IsWebSocketUpgrade(r)
	// Refusals reach a WebSocket client only as a 401 body (it prints nothing
	// else), so upgrades get 401 where a plain GET gets 404/503.
	refuseCode := func(code int) int {
		if upgrade {
			return http.StatusUnauthorized
		}
		return code
	}
	mr := s.registration(token)
	if mr == nil {
		text(w, refuseCode(http.StatusNotFound), "unknown registration token")
		return
	}
	if reason, ready := readyReason(mr); !ready {
		w.Header().Set("Retry-After", "10")
		text(w, refuseCode(http.StatusServiceUnavailable), fmt.Sprintf("MachineRegistration %s/%s is not ready: %s", mr.Namespace, mr.Name, reason))
		return
	}
	if !upgrade {
		s.serveRegistrationYAML(w, mr)
		return
	}
	select {
	case s.inFlight <- struct{}{}:
		defer func() { <-s.inFlight }()
	default:
		refused(refusedBusy)
		w.Header().Set("Retry-After", "5")
		text(w, http.StatusServiceUnavailable, "registration server busy")
		return
	}
	id, err := s.authenticate(r, mr)
	if err != nil {
		var ae *authError
		if errors.As(err, &ae) {
			s.failed(mr, r.RemoteAddr, ae.msg)
			text(w, http.StatusUnauthorized, ae.msg)
			return
		}
		s.failed(mr, r.RemoteAddr, err.Error())
		text(w, http.StatusInternalServerError, "internal error")
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader already answered
	}
	start := time.Now()
	conn := protocol.NewConn(ws, s.opts.MessageTimeout, start.Add(s.limits.Load().conversationTimeout))
	c := &conversation{ctx: r.Context(), s: s, store: s, conn: conn, mr: mr, id: id, remote: r.RemoteAddr, version: legacyVersion}
	c.run()
}

// registration resolves a token to its MachineRegistration through the index.
func (s *Server) registration(token string) *elementalv1.MachineRegistration {
	mrs, err := s.registrations.GetByIndex(tokenIndex, token)
	if err != nil {
		return nil
	}
	for _, mr := range mrs {
		if mr.Status.RegistrationToken == token && mr.DeletionTimestamp == nil {
			return mr
		}
	}
	return nil
}

func readyReason(mr *elementalv1.MachineRegistration) (string, bool) {
	c := meta.FindStatusCondition(mr.Status.Conditions, elementalv1.ConditionReady)
	switch {
	case c == nil:
		return "not reconciled yet", false
	case c.Status != metav1.ConditionTrue:
		return c.Reason, false
	}
	return "", true
}

func (s *Server) serveRegistrationYAML(w http.ResponseWriter, mr *elementalv1.MachineRegistration) {
	out, err := protocol.EncodeRegistration(s.registrationBlock(mr))
	if err != nil {
		text(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	_, _ = w.Write(out)
}

// registrationBlock is the six keys echoed to hosts.
func (s *Server) registrationBlock(mr *elementalv1.MachineRegistration) protocol.Registration {
	reg := mr.Spec.Config.Elemental.Registration
	return protocol.Registration{
		URL:             mr.Status.RegistrationURL,
		CACert:          s.endpoints().HostCA(),
		EmulateTPM:      reg.EmulateTPM,
		EmulatedTPMSeed: reg.EmulatedTPMSeed,
		NoSMBIOS:        reg.NoSMBIOS,
		Auth:            reg.Auth,
	}
}

// authenticate runs every check possible before the upgrade: a refusal
// after it can only reach the host as a protocol error, before it as a
// one-line 401 body.
func (s *Server) authenticate(r *http.Request, mr *elementalv1.MachineRegistration) (identity, error) {
	header := r.Header.Get("Authorization")
	method, err := authMethod(header)
	if err != nil {
		return identity{}, err
	}
	auth := mr.Spec.Config.Elemental.Registration.Auth
	if !methodAllowed(auth, method) {
		if auth == "" {
			auth = "tpm"
		}
		return identity{}, refuse("MachineRegistration %s/%s requires %s authentication", mr.Namespace, mr.Name, auth)
	}
	var id identity
	if method == "tpm" {
		if id, err = tpmIdentity(header); err != nil {
			return identity{}, err
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		ca, err := s.k8s.CoreV1().Secrets(mr.Namespace).Get(ctx, "tpm-ca", metav1.GetOptions{})
		switch {
		case err == nil:
			if err := verifyEKCert(id.ekCert, ca.Data[corev1.TLSCertKey]); err != nil {
				return identity{}, err
			}
		case !apierrors.IsNotFound(err):
			return identity{}, fmt.Errorf("reading tpm-ca: %w", err)
		}
	} else if id, err = plainIdentity(header); err != nil {
		return identity{}, err
	}
	matches, err := s.inventories.GetByIndex(identityIndex, id.indexKey())
	if err != nil {
		return identity{}, err
	}
	// The bodies name no objects: the identity is not proven yet.
	switch {
	case len(matches) > 1:
		s.recorder.Eventf(mr, corev1.EventTypeWarning, "RegistrationFailed",
			"host %s: machine identity matches %d MachineInventories", r.RemoteAddr, len(matches))
		return identity{}, refuse("machine identity is ambiguous; contact the administrator")
	case len(matches) == 1 && matches[0].Namespace != mr.Namespace:
		return identity{}, refuse("machine identity is already registered in another namespace")
	}
	return id, nil
}

// failed records a refused or failed registration on the MR: host address
// and cause, never the token.
func (s *Server) failed(mr *elementalv1.MachineRegistration, remote, reason string) {
	logrus.WithFields(logrus.Fields{"machineregistration": mr.Namespace + "/" + mr.Name, "remote": remote}).
		WithField("reason", reason).Warn("registration failed")
	s.recorder.Eventf(mr, corev1.EventTypeWarning, "RegistrationFailed", "host %s: %s", remote, reason)
	metrics.Registrations.WithLabelValues(registrationAuth(mr), "failed").Inc()
}

// registrationAuth is the registration's configured method (tpm when unset), for metrics.
func registrationAuth(mr *elementalv1.MachineRegistration) string {
	if a := mr.Spec.Config.Elemental.Registration.Auth; a != "" {
		return a
	}
	return "tpm"
}
