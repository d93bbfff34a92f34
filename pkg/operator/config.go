// Package operator runs the elemental-operator process: CRD installation,
// health and metrics endpoints, leader election and the controllers.
package operator

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	"github.com/elemental-operator/elemental-operator/pkg/server"
)

// EnvPrefix prefixes the environment variable of every flag:
// --leader-elect is also read from ELEMENTAL_OPERATOR_LEADER_ELECT.
const EnvPrefix = "ELEMENTAL_OPERATOR_"

// Config is the operator's whole command-line configuration.
type Config struct {
	Kubeconfig       string
	Namespace        string
	InstallCRDs      bool
	CreateNamespace  bool
	LeaderElect      bool
	Workers          int
	MetricsAddr      string
	HealthAddr       string
	RegistrationAddr string
	// RegistrationMode is auto, rancher, direct or both (see pkg/endpoints).
	RegistrationMode string
	// APIServiceSecret is the Secret Rancher fills for our APIService.
	APIServiceSecret string
	RegistrationURL  string
	AgentURL         string
	AgentCAFile      string
	// ServerURL is deprecated: it stands in for RegistrationURL and AgentURL.
	ServerURL    string
	Debug        bool
	Profiling    bool
	ResetTimeout time.Duration
	// QuarantineAfter cordons an inventory whose bootstrap plan failed this
	// many times; 0 disables it.
	QuarantineAfter int

	RegistrationTLSSecret   string
	RegistrationMaxInFlight int
	// RegistrationMaxConnections and RegistrationMaxPerSource bound open
	// connections in total and per source address; negative: no limit.
	RegistrationMaxConnections int
	RegistrationMaxPerSource   int
	// RegistrationMaxBytes is what one host may send in one registration.
	RegistrationMaxBytes int64
	AgentTokenTTL        time.Duration
	// InventoryMaxLabels, InventoryMaxAnnotations and
	// InventoryMaxMetadataBytes cap what one registration may make an
	// inventory's metadata; negative: no limit.
	InventoryMaxLabels        int
	InventoryMaxAnnotations   int
	InventoryMaxMetadataBytes int

	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// DefaultConfig has the documented defaults.
func DefaultConfig() Config {
	return Config{
		Namespace:        "cattle-elemental-system",
		InstallCRDs:      true,
		CreateNamespace:  true,
		LeaderElect:      true,
		Workers:          20,
		MetricsAddr:      ":8080",
		HealthAddr:       ":9440",
		RegistrationAddr: ":8443",
		RegistrationMode: "auto",
		APIServiceSecret: "elemental-operator",
		ResetTimeout:     30 * time.Minute,
		QuarantineAfter:  3,

		RegistrationMaxInFlight:    64,
		RegistrationMaxConnections: server.DefaultMaxConnections,
		RegistrationMaxPerSource:   server.DefaultMaxPerSource,
		RegistrationMaxBytes:       server.DefaultConversationBytes,
		InventoryMaxLabels:         server.DefaultInventoryMaxLabels,
		InventoryMaxAnnotations:    server.DefaultInventoryMaxAnnotations,
		InventoryMaxMetadataBytes:  server.DefaultInventoryMaxMetadataBytes,
		AgentTokenTTL:              87600 * time.Hour,
		LeaseDuration:              15 * time.Second,
		RenewDeadline:              10 * time.Second,
		RetryPeriod:                2 * time.Second,
	}
}

// EnvName is the environment variable that backs a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// BindFlags declares every flag on fs, with the defaults already in c.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	str := func(p *string, name, usage string) { fs.StringVar(p, name, *p, usage+" [$"+EnvName(name)+"]") }
	boolean := func(p *bool, name, usage string) { fs.BoolVar(p, name, *p, usage+" [$"+EnvName(name)+"]") }
	dur := func(p *time.Duration, name, usage string) { fs.DurationVar(p, name, *p, usage+" [$"+EnvName(name)+"]") }

	str(&c.Kubeconfig, "kubeconfig", "path to a kubeconfig; empty uses $KUBECONFIG, then the in-cluster config")
	str(&c.Namespace, "namespace", "the operator's own namespace (lease, generated TLS secret)")
	boolean(&c.InstallCRDs, "install-crds", "install or upgrade the elemental.cattle.io CRDs at start-up")
	boolean(&c.CreateNamespace, "create-namespace", "create --namespace at start-up if missing (bare clusters; the chart's namespace exists)")
	boolean(&c.LeaderElect, "leader-elect", "run controllers only while holding the elemental-operator Lease (required with more than one replica)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "worker goroutines per controller [$"+EnvName("workers")+"]")
	str(&c.MetricsAddr, "metrics-addr", "address of the Prometheus /metrics endpoint; empty disables it")
	str(&c.HealthAddr, "health-addr", "address of the /healthz and /readyz endpoints; empty disables them")
	str(&c.RegistrationAddr, "registration-addr", "address of the HTTPS registration server; empty disables it")
	str(&c.RegistrationTLSSecret, "registration-tls-secret", "kubernetes.io/tls Secret in --namespace for the registration server (ca.crt optional); empty generates one")
	fs.IntVar(&c.RegistrationMaxInFlight, "registration-max-in-flight", c.RegistrationMaxInFlight, "concurrent registrations before answering 503 busy [$"+EnvName("registration-max-in-flight")+"]")
	fs.IntVar(&c.RegistrationMaxConnections, "registration-max-connections", c.RegistrationMaxConnections, "open registration connections (direct listener and tunnel together) before answering 503; negative: no limit [$"+EnvName("registration-max-connections")+"]")
	fs.IntVar(&c.RegistrationMaxPerSource, "registration-max-per-source", c.RegistrationMaxPerSource, "open connections (direct) and concurrent requests (any path) from one source address before answering 429; negative: no limit [$"+EnvName("registration-max-per-source")+"]")
	fs.Int64Var(&c.RegistrationMaxBytes, "registration-max-bytes", c.RegistrationMaxBytes, "bytes one host may send in one registration conversation [$"+EnvName("registration-max-bytes")+"]")
	fs.IntVar(&c.InventoryMaxLabels, "inventory-max-labels", c.InventoryMaxLabels, "labels a host may send, and a registration may give its MachineInventory; more are refused; negative: no limit [$"+EnvName("inventory-max-labels")+"]")
	fs.IntVar(&c.InventoryMaxAnnotations, "inventory-max-annotations", c.InventoryMaxAnnotations, "annotations a host may send, and a registration may give its MachineInventory; more are refused; negative: no limit [$"+EnvName("inventory-max-annotations")+"]")
	fs.IntVar(&c.InventoryMaxMetadataBytes, "inventory-max-metadata-bytes", c.InventoryMaxMetadataBytes, "bytes of label and annotation keys and values a registration may give its MachineInventory; more are refused; negative: no limit [$"+EnvName("inventory-max-metadata-bytes")+"]")
	dur(&c.AgentTokenTTL, "agent-token-ttl", "requested lifetime of per-inventory agent tokens (hosts cannot refresh them)")
	str(&c.RegistrationMode, "registration-mode", "how hosts reach registration: rancher (through Rancher's URL, APIService tunnel), direct (our own HTTPS listener), both, or auto (rancher when Rancher's APIService kind is served)")
	str(&c.APIServiceSecret, "apiservice-secret", "Secret in --namespace that Rancher fills for our APIService (rancher mode)")
	str(&c.RegistrationURL, "registration-url", "base URL hosts are given in direct mode (https://host[:port]); rancher mode uses Rancher's server-url Setting")
	str(&c.AgentURL, "agent-url", "agent (Kubernetes API) URL for clusters without Rancher; with Rancher it is always <server-url>/k8s/clusters/local")
	str(&c.AgentCAFile, "agent-ca-file", "PEM file with the CA of --agent-url (clusters without Rancher); empty: system trust")
	str(&c.ServerURL, "server-url", "deprecated: sets --registration-url and --agent-url=<url>/k8s/clusters/local when those are empty")
	boolean(&c.Debug, "debug", "debug logging")
	boolean(&c.Profiling, "profiling", "serve Go pprof profiles under /debug/pprof/ on the metrics address")
	dur(&c.ResetTimeout, "reset-timeout", "how long a deleting, resettable inventory waits for its host to apply the reset plan")
	fs.IntVar(&c.QuarantineAfter, "quarantine-after", c.QuarantineAfter, "cordon (quarantine) an inventory whose bootstrap plan failed this many times, and move a selector that is not ready yet to another host; 0 disables [$"+EnvName("quarantine-after")+"]")
	dur(&c.LeaseDuration, "leader-elect-lease-duration", "how long a lease is valid without renewal")
	dur(&c.RenewDeadline, "leader-elect-renew-deadline", "how long the leader retries renewing before giving up")
	dur(&c.RetryPeriod, "leader-elect-retry-period", "how often candidates try to acquire or renew the lease")
}

// ApplyEnv sets every flag not given on the command line from its
// environment variable. Call it after fs.Parse.
func ApplyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if setErr := fs.Set(f.Name, v); setErr != nil {
				err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, setErr)
			}
		}
	})
	return err
}

// Validate rejects configurations that cannot work.
func (c *Config) Validate() error {
	if c.Namespace == "" {
		return fmt.Errorf("--namespace must not be empty")
	}
	if _, err := endpoints.ParseMode(c.RegistrationMode); err != nil {
		return fmt.Errorf("--registration-mode: %w", err)
	}
	if c.APIServiceSecret == "" {
		return fmt.Errorf("--apiservice-secret must not be empty")
	}
	if c.RegistrationMaxConnections == 0 || c.RegistrationMaxPerSource == 0 {
		return fmt.Errorf("--registration-max-connections and --registration-max-per-source must not be 0 (negative: no limit)")
	}
	if c.InventoryMaxLabels == 0 || c.InventoryMaxAnnotations == 0 || c.InventoryMaxMetadataBytes == 0 {
		return fmt.Errorf("--inventory-max-labels, --inventory-max-annotations and --inventory-max-metadata-bytes must not be 0 (negative: no limit)")
	}
	if c.RegistrationMaxBytes < 1 {
		return fmt.Errorf("--registration-max-bytes must be positive, got %d", c.RegistrationMaxBytes)
	}
	if c.Workers < 1 {
		return fmt.Errorf("--workers must be at least 1, got %d", c.Workers)
	}
	if c.QuarantineAfter < 0 {
		return fmt.Errorf("--quarantine-after must be 0 (disabled) or more, got %d", c.QuarantineAfter)
	}
	if c.LeaderElect && (c.LeaseDuration <= c.RenewDeadline || c.RenewDeadline <= c.RetryPeriod || c.RetryPeriod <= 0) {
		return fmt.Errorf("leader election needs lease-duration > renew-deadline > retry-period > 0")
	}
	return nil
}

// StaticEndpoints is the command-line part of what hosts are given, with
// mode already resolved. The deprecated --server-url fills what is unset.
func (c *Config) StaticEndpoints(mode endpoints.Mode) (endpoints.Static, error) {
	st := endpoints.Static{Mode: mode, RegistrationURL: c.RegistrationURL, AgentURL: c.AgentURL}
	if base := strings.TrimRight(c.ServerURL, "/"); base != "" {
		if st.RegistrationURL == "" {
			st.RegistrationURL = base
		}
		if st.AgentURL == "" {
			st.AgentURL = base + endpoints.AgentPath
		}
	}
	if c.AgentCAFile != "" {
		ca, err := os.ReadFile(c.AgentCAFile)
		if err != nil {
			return st, fmt.Errorf("--agent-ca-file: %w", err)
		}
		st.AgentCA = string(ca)
	}
	return st, nil
}
