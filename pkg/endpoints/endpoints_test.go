package endpoints

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestResolve(t *testing.T) {
	rancher := RancherSettings{Present: true, ServerURL: "https://rancher.example.com", CACerts: "RANCHER-CA"}
	for _, tc := range []struct {
		name     string
		static   Static
		rancher  RancherSettings
		directCA string
		want     Endpoints
	}{
		{
			name: "rancher mode: Rancher's URL and CA for both", static: Static{Mode: Rancher}, rancher: rancher, directCA: "OUR-CA",
			want: Endpoints{RegistrationBase: "https://rancher.example.com", RegistrationCA: "RANCHER-CA",
				AgentURL: "https://rancher.example.com/k8s/clusters/local", AgentCA: "RANCHER-CA", StrictTLS: true},
		},
		{
			name: "rancher mode, publicly trusted: no CA, not strict", static: Static{Mode: Rancher},
			rancher: RancherSettings{Present: true, ServerURL: "https://rancher.example.com/"},
			want: Endpoints{RegistrationBase: "https://rancher.example.com",
				AgentURL: "https://rancher.example.com/k8s/clusters/local"},
		},
		{
			name: "rancher mode, agent-tls-mode system-store: CA given, not strict", static: Static{Mode: Rancher},
			rancher: RancherSettings{Present: true, ServerURL: "https://r", CACerts: "RANCHER-CA", AgentTLSMode: "system-store"},
			want: Endpoints{RegistrationBase: "https://r", RegistrationCA: "RANCHER-CA",
				AgentURL: "https://r/k8s/clusters/local", AgentCA: "RANCHER-CA"},
		},
		{
			name: "rancher mode without Rancher", static: Static{Mode: Rancher, AgentURL: "https://api"},
			want: Endpoints{RegistrationProblem: "registration mode rancher needs Rancher, but the management.cattle.io Setting kind is not served",
				AgentURL: "https://api"},
		},
		{
			name: "rancher mode, server-url empty", static: Static{Mode: Both}, rancher: RancherSettings{Present: true},
			want: Endpoints{RegistrationProblem: "Rancher's server-url Setting is empty", AgentProblem: "Rancher's server-url Setting is empty"},
		},
		{
			name: "both: hosts are given Rancher's URL", static: Static{Mode: Both, RegistrationURL: "https://reg"}, rancher: rancher, directCA: "OUR-CA",
			want: Endpoints{RegistrationBase: "https://rancher.example.com", RegistrationCA: "RANCHER-CA",
				AgentURL: "https://rancher.example.com/k8s/clusters/local", AgentCA: "RANCHER-CA", StrictTLS: true},
		},
		{
			name:   "direct next to Rancher: our URL and CA to register, Rancher's for the agent",
			static: Static{Mode: Direct, RegistrationURL: "https://reg.example.com/", AgentURL: "https://ignored"}, rancher: rancher, directCA: "OUR-CA",
			want: Endpoints{RegistrationBase: "https://reg.example.com", RegistrationCA: "OUR-CA",
				AgentURL: "https://rancher.example.com/k8s/clusters/local", AgentCA: "RANCHER-CA", StrictTLS: true},
		},
		{
			name: "direct without Rancher: explicit agent URL and CA", static: Static{Mode: Direct, RegistrationURL: "https://reg", AgentURL: "https://api:6443/", AgentCA: "API-CA"},
			directCA: "OUR-CA",
			want:     Endpoints{RegistrationBase: "https://reg", RegistrationCA: "OUR-CA", AgentURL: "https://api:6443", AgentCA: "API-CA", StrictTLS: true},
		},
		{
			name: "direct without a registration URL", static: Static{Mode: Direct},
			want: Endpoints{RegistrationProblem: "direct registration mode needs --registration-url (chart: registration.url)",
				AgentProblem: "no agent URL: Rancher is not installed and --agent-url (chart: agent.url) is not set"},
		},
		{
			name: "Rancher with an empty server-url falls back to the explicit agent URL", static: Static{Mode: Direct, RegistrationURL: "https://reg", AgentURL: "https://api"},
			rancher: RancherSettings{Present: true},
			want:    Endpoints{RegistrationBase: "https://reg", AgentURL: "https://api"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Resolve(tc.static, tc.rancher, tc.directCA))
		})
	}
}

func TestMode(t *testing.T) {
	for _, s := range []string{"auto", "rancher", "direct", "both"} {
		m, err := ParseMode(s)
		assert.NoError(t, err)
		assert.Equal(t, Mode(s), m)
	}
	_, err := ParseMode("tunnel")
	assert.ErrorContains(t, err, "want auto, rancher, direct or both")
	assert.Equal(t, Rancher, Auto.Resolve(true))
	assert.Equal(t, Direct, Auto.Resolve(false))
	assert.Equal(t, Both, Both.Resolve(false))
	assert.True(t, Both.Tunnel() && Both.Listener())
	assert.True(t, Rancher.Tunnel() && !Rancher.Listener())
	assert.True(t, !Direct.Tunnel() && Direct.Listener())
}
