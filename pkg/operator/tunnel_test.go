package operator_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// The operator in rancher mode with a missing, partial, then wrong Secret:
// it keeps running, says why on /readyz?verbose and /readyz/rancher-tunnel
// (while /readyz stays green), and connects as soon as the Secret is right.
// It never logs the token.
func TestTunnelSecretFaults(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	rancher, err := testenv.StartRancher(env.Config, testenv.RancherOptions{SeparateInternalURL: true})
	require.NoError(t, err)
	defer rancher.Stop()
	// Rancher fills "rancher-written" for this APIService; the test copies
	// its values into the Secret the operator watches, one fault at a time.
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	_, err = mf.Management().V3().APIService().Create(&mgmtv3.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: "faults-" + ns},
		Spec:       mgmtv3.APIServiceSpec{SecretName: "rancher-written", SecretNamespace: ns, PathPrefixes: []string{"/elemental/"}},
	})
	require.NoError(t, err)
	var written *corev1.Secret
	require.Eventually(t, func() bool {
		written, err = env.Client.CoreV1().Secrets(ns).Get(ctx, "rancher-written", metav1.GetOptions{})
		return err == nil && len(written.Data["token"]) > 0
	}, time.Minute, 100*time.Millisecond)

	p := start(t, ns, "ELEMENTAL_OPERATOR_REGISTRATION_MODE=rancher")
	p.waitReady(t)
	tunnelSays := func(want string) {
		t.Helper()
		var body string
		require.Eventually(t, func() bool {
			_, body = get("http://" + p.health + "/readyz?verbose")
			return strings.Contains(body, want)
		}, 30*time.Second, 100*time.Millisecond, "readyz never said %q; last: %s", want, body)
		code, _ := get("http://" + p.health + "/readyz")
		assert.Equal(t, http.StatusOK, code, "the tunnel never fails /readyz")
	}
	tunnelSays("[-]rancher-tunnel not connected: Secret " + ns + "/elemental-operator: the Secret does not exist yet")
	code, _ := get("http://" + p.health + "/readyz/rancher-tunnel")
	assert.Equal(t, http.StatusServiceUnavailable, code)

	secrets := env.Client.CoreV1().Secrets(ns)
	s, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "elemental-operator"},
		Data: map[string][]byte{"url": written.Data["url"]}}, metav1.CreateOptions{})
	require.NoError(t, err)
	tunnelSays("the Secret has no token yet")

	s.Data = map[string][]byte{"url": written.Data["url"], "token": written.Data["token"], "ca.crt": rancher.CAPEM}
	s, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	tunnelSays("TLS verification of Rancher failed")

	s.Data["ca.crt"] = written.Data["ca.crt"]
	s.Data["token"] = []byte("not-the-token")
	s, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	tunnelSays("rancher refused the tunnel token (HTTP 401")

	s.Data["token"] = written.Data["token"]
	_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	tunnelSays("[+]rancher-tunnel ok: connected to " + strings.TrimPrefix(rancher.InternalURL, "https://"))
	code, _ = get("http://" + p.health + "/readyz/rancher-tunnel")
	assert.Equal(t, http.StatusOK, code)
	_, metrics := get("http://" + p.metrics + "/metrics")
	assert.Contains(t, metrics, "\nelemental_operator_rancher_tunnel_connected 1\n")
	assert.Regexp(t, `elemental_operator_rancher_tunnel_dials_total\{result="failed"\} [1-9]`, metrics)

	// Through Rancher's URL, an unclaimed /elemental path reaches our handler.
	resp, err := rancher.HTTPClient().Get(rancher.URL + "/elemental/anything-else")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	assert.NotContains(t, p.out.String(), string(written.Data["token"]), "the token is never logged")
}
