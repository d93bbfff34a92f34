package operator

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
)

func parse(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.BindFlags(fs)
	require.NoError(t, fs.Parse(args))
	return cfg, ApplyEnv(fs)
}

func TestEnvironmentBacksEveryFlag(t *testing.T) {
	cfg, err := parse(t, nil, map[string]string{
		"ELEMENTAL_OPERATOR_NAMESPACE":                   "from-env",
		"ELEMENTAL_OPERATOR_LEADER_ELECT":                "false",
		"ELEMENTAL_OPERATOR_WORKERS":                     "9",
		"ELEMENTAL_OPERATOR_SERVER_URL":                  "https://rancher.example.com",
		"ELEMENTAL_OPERATOR_LEADER_ELECT_LEASE_DURATION": "1m",
	})
	require.NoError(t, err)
	assert.Equal(t, "from-env", cfg.Namespace)
	assert.False(t, cfg.LeaderElect)
	assert.Equal(t, 9, cfg.Workers)
	assert.Equal(t, "https://rancher.example.com", cfg.ServerURL)
	assert.Equal(t, time.Minute, cfg.LeaseDuration)
	assert.Equal(t, ":8443", cfg.RegistrationAddr, "unset variables keep the default")
}

func TestFlagWinsOverEnvironment(t *testing.T) {
	cfg, err := parse(t, []string{"--namespace=from-flag"}, map[string]string{"ELEMENTAL_OPERATOR_NAMESPACE": "from-env"})
	require.NoError(t, err)
	assert.Equal(t, "from-flag", cfg.Namespace)
}

func TestBadEnvironmentValueIsAnError(t *testing.T) {
	_, err := parse(t, nil, map[string]string{"ELEMENTAL_OPERATOR_WORKERS": "many"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ELEMENTAL_OPERATOR_WORKERS")
}

func TestValidate(t *testing.T) {
	cfg := DefaultConfig()
	require.NoError(t, cfg.Validate())
	cfg.Workers = 0
	assert.Error(t, cfg.Validate())
	cfg = DefaultConfig()
	cfg.RenewDeadline = cfg.LeaseDuration
	assert.Error(t, cfg.Validate())
	cfg.LeaderElect = false
	assert.NoError(t, cfg.Validate(), "lease timings only matter with leader election")
	cfg.Namespace = ""
	assert.Error(t, cfg.Validate())
	cfg = DefaultConfig()
	cfg.InventoryMaxMetadataBytes = 0
	assert.Error(t, cfg.Validate(), "0 is neither a limit nor no limit")
	cfg.InventoryMaxMetadataBytes = -1
	assert.NoError(t, cfg.Validate(), "negative: no limit")
}

func TestValidateRegistrationMode(t *testing.T) {
	cfg := DefaultConfig()
	assert.Equal(t, "auto", cfg.RegistrationMode)
	cfg.RegistrationMode = "tunnel"
	assert.ErrorContains(t, cfg.Validate(), "--registration-mode")
	cfg = DefaultConfig()
	cfg.APIServiceSecret = ""
	assert.ErrorContains(t, cfg.Validate(), "--apiservice-secret")
}

func TestStaticEndpoints(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, []byte("PEM"), 0o600))
	for _, tc := range []struct {
		name string
		cfg  Config
		want endpoints.Static
	}{
		{name: "explicit", cfg: Config{RegistrationURL: "https://reg", AgentURL: "https://api", AgentCAFile: caFile},
			want: endpoints.Static{Mode: endpoints.Direct, RegistrationURL: "https://reg", AgentURL: "https://api", AgentCA: "PEM"}},
		{name: "deprecated server-url fills both", cfg: Config{ServerURL: "https://old/"},
			want: endpoints.Static{Mode: endpoints.Direct, RegistrationURL: "https://old", AgentURL: "https://old/k8s/clusters/local"}},
		{name: "explicit wins over server-url", cfg: Config{ServerURL: "https://old", RegistrationURL: "https://reg"},
			want: endpoints.Static{Mode: endpoints.Direct, RegistrationURL: "https://reg", AgentURL: "https://old/k8s/clusters/local"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.StaticEndpoints(endpoints.Direct)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	_, err := (&Config{AgentCAFile: "/nonexistent"}).StaticEndpoints(endpoints.Direct)
	assert.ErrorContains(t, err, "--agent-ca-file")
}

func TestQuarantineAfter(t *testing.T) {
	cfg, err := parse(t, nil, map[string]string{"ELEMENTAL_OPERATOR_QUARANTINE_AFTER": "0"})
	require.NoError(t, err)
	assert.Equal(t, 0, cfg.QuarantineAfter, "0 disables quarantine")
	require.NoError(t, cfg.Validate())
	assert.Equal(t, 3, DefaultConfig().QuarantineAfter)
	cfg.QuarantineAfter = -1
	assert.ErrorContains(t, cfg.Validate(), "--quarantine-after")
}
