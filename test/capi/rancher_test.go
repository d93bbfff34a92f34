package capi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// TestRancherOutages: what hosts see when Rancher, its tunnel token or the
// operator goes away, all through Rancher's URL as in TestClusterAPIProvisioning.
func TestRancherOutages(t *testing.T) {
	ctx := context.Background()
	ns, err := env.NewNamespace(ctx, "outage")
	require.NoError(t, err)
	mr := &elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "outage"}}
	mr.Spec.Config.Elemental.Registration.Auth = "mac"
	_, err = el.MachineRegistration().Create(mr)
	require.NoError(t, err)
	testenv.Eventually(t, time.Minute, func() error {
		if mr, err = el.MachineRegistration().Get(ns, "outage", metav1.GetOptions{}); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(mr.Status.Conditions, elementalv1.ConditionReady) {
			return fmt.Errorf("registration not ready: %+v", mr.Status.Conditions)
		}
		return nil
	})
	regConfig := registrationConfig(t, mr.Status.RegistrationURL)

	hostNo := 0
	// register runs our client for a new host and checks it was registered.
	register := func(t *testing.T) {
		t.Helper()
		hostNo++
		root, err := registerOnly(t, regConfig, fmt.Sprintf("52:54:00:0d:00:%02x", hostNo))
		require.NoError(t, err, "registration through Rancher")
		mi := inventoryWithSecret(t, ns, root)
		_, err = el.MachineInventory().Get(ns, mi, metav1.GetOptions{})
		require.NoError(t, err)
	}
	register(t)

	connects := func() float64 { return tunnelDials(t, "connected") }
	// reconnected waits for a tunnel dial that succeeded after before was
	// read, Rancher routing to it, and the operator reporting it.
	reconnected := func(t *testing.T, before float64) {
		t.Helper()
		testenv.Eventually(t, time.Minute, func() error {
			if n := connects(); n <= before {
				return fmt.Errorf("no new tunnel connection (%v)", n)
			}
			if !rancher.HasSession(apiServiceName) {
				return fmt.Errorf("rancher has no session")
			}
			// The operator's own view.
			code, body, err := operatorTunnelStatus()
			if err != nil {
				return err
			}
			if code != http.StatusOK || !strings.Contains(body, "connected to "+strings.TrimPrefix(rancher.URL, "https://")) {
				return fmt.Errorf("/readyz/rancher-tunnel: %d %s", code, body)
			}
			return nil
		})
	}

	t.Run("Rancher restarts: the tunnel reconnects and registration works again", func(t *testing.T) {
		before := connects()
		url := rancher.URL
		require.NoError(t, rancher.Restart())
		require.Equal(t, url, rancher.URL)
		reconnected(t, before)
		require.NoError(t, waitTunnel(ctx, time.Minute))
		register(t)
	})

	t.Run("token rotation: the operator reconnects with the new token", func(t *testing.T) {
		old := rancher.Token(apiServiceName)
		require.NotEmpty(t, old)
		before := connects()
		// Rancher refuses the old token from now on and drops its session.
		require.NoError(t, rancher.RotateToken(apiServiceName))
		fresh := rancher.Token(apiServiceName)
		require.NotEqual(t, old, fresh)
		reconnected(t, before)
		secret, err := env.Client.CoreV1().Secrets(operatorNamespace).Get(ctx, apiServiceName, metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, fresh, string(secret.Data["token"]))
		register(t)
	})

	t.Run("another path under /elemental/ reaches our handler, which answers 404", func(t *testing.T) {
		code, _, body := rancherGet(t, rancher.URL+"/elemental/anything-else")
		assert.Equal(t, http.StatusNotFound, code)
		assert.Equal(t, "not found", body, "our handler's 404, not Rancher's")
		// Outside the APIService's prefix, Rancher's own 404.
		code, _, body = rancherGet(t, rancher.URL+"/elemental")
		assert.Equal(t, http.StatusNotFound, code)
		assert.Equal(t, "404 page not found\n", body)
	})

	t.Run("operator down: Rancher holds the request, then 503 Handler disconnected", func(t *testing.T) {
		require.NoError(t, stopRunningOperator())
		t.Cleanup(func() {
			// Leave the operator running for whatever runs next.
			startOperator()
			_ = waitTunnel(ctx, time.Minute)
		})
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		require.NoError(t, rancher.WaitSessions(wctx, apiServiceName, 0))

		const mac = "52:54:00:0d:00:ff"
		start := time.Now()
		_, err := registerOnly(t, regConfig, mac)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "503")
		assert.GreaterOrEqual(t, time.Since(start), sessionWait, "Rancher waits for a session first")

		start = time.Now()
		code, _, body := rancherGet(t, mr.Status.RegistrationURL)
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Equal(t, "Handler disconnected\n", body)
		assert.GreaterOrEqual(t, time.Since(start), sessionWait)

		// Back up: the same host registers.
		before := connects()
		startOperator()
		reconnected(t, before)
		root, err := registerOnly(t, regConfig, mac)
		require.NoError(t, err)
		inventoryWithSecret(t, ns, root)
	})
}

// operatorTunnelStatus is the operator's /readyz/rancher-tunnel.
func operatorTunnelStatus() (int, string, error) {
	resp, err := http.Get("http://" + healthAddr + "/readyz/rancher-tunnel")
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// tunnelDials is the operator's elemental_operator_rancher_tunnel_dials_total
// for a result (the operator runs in this process).
func tunnelDials(t *testing.T, result string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "elemental_operator_rancher_tunnel_dials_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
