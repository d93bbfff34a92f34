package operator

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	"github.com/elemental-operator/elemental-operator/pkg/register/settings"
	"github.com/elemental-operator/elemental-operator/pkg/server"
	"github.com/elemental-operator/elemental-operator/pkg/tunnel"
)

// resolveEndpoints turns --registration-mode auto into rancher or direct
// (Rancher's APIService kind served or not) and reads the URL flags.
func resolveEndpoints(cfg Config, k8s kubernetes.Interface) (endpoints.Static, error) {
	mode, err := endpoints.ParseMode(cfg.RegistrationMode)
	if err != nil {
		return endpoints.Static{}, err
	}
	if mode == endpoints.Auto {
		served, err := settings.APIServiceServed(k8s.Discovery())
		if err != nil {
			return endpoints.Static{}, fmt.Errorf("discovering Rancher's APIService kind: %w", err)
		}
		mode = mode.Resolve(served)
	}
	log := logrus.WithField("mode", mode)
	if cfg.ServerURL != "" {
		log.Warn("--server-url is deprecated: use --registration-url (direct mode) and --agent-url (clusters without Rancher)")
	}
	static, err := cfg.StaticEndpoints(mode)
	if err != nil {
		return static, err
	}
	log.WithFields(logrus.Fields{"registrationURL": static.RegistrationURL, "agentURL": static.AgentURL}).Info("registration endpoints")
	return static, nil
}

// startRegistration serves the registration handler on our own listener
// (direct, both) and through Rancher's tunnel (rancher, both).
func startRegistration(ctx context.Context, cfg Config, restCfg *rest.Config, k8s kubernetes.Interface, static endpoints.Static, health *healthChecks) error {
	listener := static.Mode.Listener() && cfg.RegistrationAddr != ""
	if !listener && !static.Mode.Tunnel() {
		logrus.Info("registration is disabled (direct mode without --registration-addr)")
		return nil
	}
	opts := server.Options{
		Endpoints:     static,
		Addr:          cfg.RegistrationAddr,
		Namespace:     cfg.Namespace,
		TLSSecret:     cfg.RegistrationTLSSecret,
		MaxInFlight:   cfg.RegistrationMaxInFlight,
		AgentTokenTTL: cfg.AgentTokenTTL,

		MaxConnections:    cfg.RegistrationMaxConnections,
		MaxPerSource:      cfg.RegistrationMaxPerSource,
		ConversationBytes: cfg.RegistrationMaxBytes,

		InventoryMaxLabels:        cfg.InventoryMaxLabels,
		InventoryMaxAnnotations:   cfg.InventoryMaxAnnotations,
		InventoryMaxMetadataBytes: cfg.InventoryMaxMetadataBytes,
	}
	reg, err := server.Start(ctx, restCfg, opts)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, reg.Stop)
	if !static.Mode.Tunnel() {
		return nil
	}
	t, err := tunnel.Start(ctx, k8s, tunnel.Options{Namespace: cfg.Namespace, Secret: cfg.APIServiceSecret,
		Handler: reg, NewServer: reg.NewHTTPServer, Listener: reg.TunnelListener})
	if err != nil {
		return err
	}
	health.setTunnel(t)
	return nil
}
