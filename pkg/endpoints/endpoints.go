// Package endpoints decides the two URLs a host is given and the CA that goes
// with each: where it registers (Rancher's URL through the APIService tunnel,
// or our own listener in direct mode) and where its agent fetches plans
// (Rancher's /k8s/clusters/local, or an explicit URL on clusters without
// Rancher). One pure function, so the MachineRegistration controller and the
// registration server can never disagree.
package endpoints

import (
	"fmt"
	"strings"

	"github.com/elemental-operator/elemental-operator/pkg/register/settings"
)

// Mode says how hosts reach the registration endpoint.
type Mode string

const (
	// Auto is Rancher when Rancher's APIService kind is served, else Direct.
	Auto Mode = "auto"
	// Rancher serves registration through Rancher's URL (APIService tunnel).
	Rancher Mode = "rancher"
	// Direct serves it on our own HTTPS listener (Service, Ingress, LB).
	Direct Mode = "direct"
	// Both runs the two side by side (migrations); hosts are given Rancher's URL.
	Both Mode = "both"
)

// ParseMode validates a --registration-mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, Rancher, Direct, Both:
		return m, nil
	}
	return "", fmt.Errorf("registration mode %q: want auto, rancher, direct or both", s)
}

// Resolve turns Auto into Rancher or Direct.
func (m Mode) Resolve(apiServiceServed bool) Mode {
	if m != Auto {
		return m
	}
	if apiServiceServed {
		return Rancher
	}
	return Direct
}

// Tunnel says whether the mode serves through Rancher's tunnel.
func (m Mode) Tunnel() bool { return m == Rancher || m == Both }

// Listener says whether the mode serves on our own HTTPS listener.
func (m Mode) Listener() bool { return m == Direct || m == Both }

// Static is the command-line part.
type Static struct {
	// Mode is already resolved (never Auto).
	Mode Mode
	// RegistrationURL is the base URL hosts are given in direct mode.
	RegistrationURL string
	// AgentURL and AgentCA (PEM) are the agent endpoint on clusters without Rancher.
	AgentURL, AgentCA string
}

// RancherSettings are the Rancher Settings that matter; Present is false
// when the Setting kind is not served (no Rancher).
type RancherSettings struct {
	Present                          bool
	ServerURL, CACerts, AgentTLSMode string
}

// FromReader reads the Settings through a cache-backed reader.
func FromReader(r settings.Reader) RancherSettings {
	if r.Cache == nil {
		return RancherSettings{}
	}
	return RancherSettings{
		Present:      true,
		ServerURL:    r.Value(settings.ServerURL),
		CACerts:      r.Value(settings.CACerts),
		AgentTLSMode: r.Value(settings.AgentTLSMode),
	}
}

// Endpoints is what hosts are given.
type Endpoints struct {
	// RegistrationBase is the base of status.registrationURL; "" when unknown.
	RegistrationBase string
	// RegistrationCA is the CA of RegistrationBase ("" = system trust).
	RegistrationCA string
	// AgentURL is the agent's kube-apiserver URL; "" when unknown.
	AgentURL string
	// AgentCA is the CA of AgentURL ("" = system trust).
	AgentCA string
	// StrictTLS tells the agent to trust only AgentCA.
	StrictTLS bool
	// RegistrationProblem and AgentProblem say why a URL is unknown.
	RegistrationProblem, AgentProblem string
}

// AgentPath is where Rancher serves the local cluster's API to agents.
const AgentPath = "/k8s/clusters/local"

// Resolve is the single rule. directCA is the CA of our own listener's
// certificate ("" when it is publicly trusted or not known).
func Resolve(s Static, r RancherSettings, directCA string) Endpoints {
	var e Endpoints
	r.ServerURL = strings.TrimRight(r.ServerURL, "/")
	switch {
	case s.Mode.Tunnel() && !r.Present:
		e.RegistrationProblem = "registration mode " + string(s.Mode) + " needs Rancher, but the management.cattle.io Setting kind is not served"
	case s.Mode.Tunnel() && r.ServerURL == "":
		e.RegistrationProblem = "Rancher's server-url Setting is empty"
	case s.Mode.Tunnel():
		e.RegistrationBase, e.RegistrationCA = r.ServerURL, r.CACerts
	case s.RegistrationURL == "":
		e.RegistrationProblem = "direct registration mode needs --registration-url (chart: registration.url)"
	default:
		e.RegistrationBase, e.RegistrationCA = strings.TrimRight(s.RegistrationURL, "/"), directCA
	}

	switch {
	case r.Present && r.ServerURL != "":
		// With Rancher, agents always go through Rancher: our own listener
		// does not serve the Kubernetes API.
		e.AgentURL, e.AgentCA = r.ServerURL+AgentPath, r.CACerts
		// Strict only with a CA to verify against: a strict agent without
		// one exits at start-up.
		e.StrictTLS = r.AgentTLSMode != "system-store" && e.AgentCA != ""
	case r.Present && s.AgentURL == "":
		e.AgentProblem = "Rancher's server-url Setting is empty"
	case s.AgentURL != "":
		e.AgentURL, e.AgentCA = strings.TrimRight(s.AgentURL, "/"), s.AgentCA
		e.StrictTLS = e.AgentCA != ""
	default:
		e.AgentProblem = "no agent URL: Rancher is not installed and --agent-url (chart: agent.url) is not set"
	}
	return e
}

// HostCA is the one ca-cert a host receives: elemental-register trusts it for
// the registration URL and writes it into the agent's kubeconfig, so it must
// cover both URLs. Duplicates are dropped; "" means system trust.
func (e Endpoints) HostCA() string {
	return bundle(e.RegistrationCA, e.AgentCA)
}
