package server_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
)

func httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(hostCA))
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func plainGet(t *testing.T, url string) (int, string) {
	resp, err := httpClient().Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func hashOf(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

type host struct {
	id     string
	update bool
	labels map[string]string
}

func register(t *testing.T, mr *elementalv1.MachineRegistration, h host) (*protocol.Config, error) {
	t.Helper()
	payload, err := client.Register(context.Background(), client.Request{
		URL:           mr.Status.RegistrationURL,
		CACert:        hostCA,
		Authorization: client.PlainAuth(h.id),
		Update:        h.update,
		Smbios:        map[string]interface{}{"System Information": map[string]interface{}{"UUID": "uuid-" + h.id, "Manufacturer": "QEMU"}},
		SystemData:    map[string]interface{}{"CPU": map[string]interface{}{"TotalCores": "4"}, "Runtime": map[string]interface{}{"Hostname": "host " + h.id}},
		Annotations:   map[string]string{"auth": "mac", "reg-version": "test", "os.unmanaged": "true", "resettable": "true"},
		Labels:        h.labels,
	})
	if err != nil {
		return nil, err
	}
	var cfg protocol.Config
	require.NoError(t, protocol.DecodeConfig(payload, &cfg))
	return &cfg, nil
}

func macRegistration() elementalv1.MachineRegistrationSpec {
	spec := elementalv1.MachineRegistrationSpec{
		MachineName: "node-${Random/Hex/6}",
		MachineInventoryLabels: map[string]string{
			"element":    "fire",
			"cores":      "${CPU/TotalCores}",
			"hostname":   "${Runtime/Hostname}",
			"rand":       "${Random/Hex/8}",
			"missing":    "${Nope/Nothing}",
			"bad-random": "${Random/Hex/99}",
		},
		MachineInventoryAnnotations: map[string]string{"uuid": "${System Information/UUID}"},
	}
	spec.Config.Elemental.Registration.Auth = "mac"
	spec.Config.Elemental.Reset.Enabled = true
	spec.Config.Elemental.Install.Device = "/dev/vda"
	spec.Config.CloudConfig = map[string]runtime.RawExtension{"users": {Raw: []byte(`[{"name":"root","passwd":"root"}]`)}}
	return spec
}

func TestRegisterPlainHosts(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "fire", macRegistration())

	code, body := plainGet(t, mr.Status.RegistrationURL)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "elemental:\n    registration:\n        url: "+mr.Status.RegistrationURL+"\n        ca-cert: |\n            -----BEGIN CERTIFICATE-----\n")
	assert.Contains(t, body, "        auth: mac\n")

	before := writes.Snapshot()
	const n = 5
	names := map[string]bool{}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("52:54:00:00:00:%02x", i)
		cfg, err := register(t, mr, host{id: id, labels: map[string]string{"site": "lab:1!", "ip": "fe80::1", "bad key": "x"}})
		require.NoError(t, err)
		mi := inventoryByHash(t, ns, hashOf(id))
		require.NotNil(t, mi, id)
		names[mi.Name] = true
		assert.Regexp(t, `^node-[0-9a-f]{6}$`, mi.Name)
		assert.Equal(t, []string{elementalv1.MachineInventoryFinalizer}, mi.Finalizers)
		assert.Equal(t, keyedLabel(t, false, hashOf(id)), mi.Labels[elementalv1.IdentityHashLabel])
		assert.Equal(t, "fire", mi.Labels["element"])
		assert.Equal(t, "4", mi.Labels["cores"])
		assert.Equal(t, "host-"+strings.ReplaceAll(id, ":", "-"), mi.Labels["hostname"])
		assert.Equal(t, "lab-1", mi.Labels["elemental.cattle.io/site"])
		assert.Equal(t, "fe80-1", mi.Labels["elemental.cattle.io/ip"])
		assert.NotContains(t, mi.Labels, "missing")
		assert.NotContains(t, mi.Labels, "bad-random")
		assert.Equal(t, "uuid-"+id, mi.Annotations["uuid"])
		assert.Equal(t, "mac", mi.Annotations["elemental.cattle.io/auth"])
		assert.Equal(t, "127.0.0.1", mi.Annotations["elemental.cattle.io/registration-ip"])
		assert.Equal(t, "true", mi.Annotations[elementalv1.OSUnmanagedAnnotation])
		assert.Equal(t, "true", mi.Annotations[elementalv1.ResettableAnnotation], "from the MR's reset.enabled")
		assert.Equal(t, "fire", mi.Annotations[elementalv1.MachineRegistrationAnnotation])
		assert.Equal(t, "Release", mi.Annotations[elementalv1.ReleasePolicyAnnotation])

		sa := cfg.Elemental.SystemAgent
		assert.Equal(t, baseURL+"/k8s/clusters/local", sa.URL)
		assert.Equal(t, mi.Name, sa.SecretName)
		assert.Equal(t, ns, sa.SecretNamespace)
		// Strict only when the agent URL has a CA: the simulated Rancher's
		// cacerts; none when server-url names the direct listener.
		assert.Equal(t, rancher != nil, sa.StrictTLSMode)
		assert.Equal(t, "/dev/vda", cfg.Elemental.Install.Device)
		assert.Equal(t, mr.Status.RegistrationURL, cfg.Elemental.Registration.URL)
		assert.JSONEq(t, `[{"name":"root","passwd":"root"}]`, string(cfg.CloudConfig["users"].Raw))

		// The plan Secret (and the agent's access to it) comes from the
		// inventory controller, right after the registration.
		eventually(t, 10*time.Second, func() error {
			secret, err := env.Client.CoreV1().Secrets(ns).Get(context.Background(), mi.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			assert.Equal(t, "{}", string(secret.Data["plan"]))
			return nil
		})
	}
	assert.Len(t, names, n)

	after := writes.Snapshot()
	delta := func(key string) int { return after[key] - before[key] }
	t.Logf("writes for %d new hosts: %v", n, diff(before, after))
	assert.Equal(t, n, delta("POST machineinventories"), "one inventory write per new host")
	assert.Zero(t, delta("PATCH machineinventories")+delta("PUT machineinventories"))
	// On the registration path: the inventory, its ServiceAccount and a
	// TokenRequest (not stored). Nothing else.
	assert.Equal(t, n, delta("POST serviceaccounts"))
	assert.Equal(t, n, delta("POST serviceaccounts/token"))
	assert.Zero(t, delta("POST roles")+delta("POST rolebindings")+delta("POST secrets"), "the inventory controller creates those")

	// Warnings for the skipped templates and keys reached the MR.
	var reasons []string
	for _, e := range events(t, ns) {
		reasons = append(reasons, e.Reason)
	}
	assert.Contains(t, reasons, "InvalidLabelTemplate")
	assert.Contains(t, reasons, "InvalidLabel")
	assert.Contains(t, reasons, "Registered")
}

func diff(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func TestReRegistrationKeepsInventory(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "fire", macRegistration())
	id := "52:54:00:aa:bb:cc"
	_, err := register(t, mr, host{id: id, labels: map[string]string{"site": "a"}})
	require.NoError(t, err)
	first := inventoryByHash(t, ns, hashOf(id))
	require.NotNil(t, first)
	// An admin's own label survives: updates are merge patches.
	_, err = inventories.Patch(ns, first.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"admin":"kept"}}}`))
	require.NoError(t, err)

	// The MR changes: a new label template; the client changes its label.
	cur, err := registrations.Get(ns, "fire", metav1.GetOptions{})
	require.NoError(t, err)
	cur.Spec.MachineInventoryLabels["zone"] = "z1"
	_, err = registrations.Update(cur)
	require.NoError(t, err)

	eventually(t, 10e9, func() error {
		if _, err := register(t, mr, host{id: id, update: true, labels: map[string]string{"site": "b"}}); err != nil {
			return err
		}
		mi := inventoryByHash(t, ns, hashOf(id))
		if mi.Labels["zone"] != "z1" {
			return fmt.Errorf("zone not set yet")
		}
		return nil
	})
	mi := inventoryByHash(t, ns, hashOf(id))
	assert.Equal(t, first.Name, mi.Name)
	assert.Equal(t, first.UID, mi.UID)
	assert.Equal(t, "b", mi.Labels["elemental.cattle.io/site"])
	assert.Equal(t, "kept", mi.Labels["admin"])
	assert.Equal(t, first.Labels["rand"], mi.Labels["rand"], "Random labels are rendered once")
	list, err := inventories.List(ns, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, list.Items, 1)

	// Update from a host nobody knows.
	_, err = register(t, mr, host{id: "52:54:00:ff:ff:ff", update: true})
	require.Error(t, err)
	assert.Equal(t, "update error: MachineInventory not found", err.Error())
}

// The agent credential reads and updates its own plan Secret, nothing else.
func TestAgentCredentialIsScoped(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "fire", macRegistration())
	cfgA, err := register(t, mr, host{id: "52:54:00:01:01:01"})
	require.NoError(t, err)
	cfgB, err := register(t, mr, host{id: "52:54:00:02:02:02"})
	require.NoError(t, err)
	ctx := context.Background()

	rc := rest.AnonymousClientConfig(env.Config)
	rc.BearerToken = cfgA.Elemental.SystemAgent.Token
	agent, err := kubernetes.NewForConfig(rc)
	require.NoError(t, err)
	own := cfgA.Elemental.SystemAgent.SecretName
	// The token authenticates at once; its access to the plan Secret is
	// granted by the inventory controller just after the registration (the
	// real agent retries its list until then). Until then: Forbidden only.
	var s *corev1.Secret
	eventually(t, 10*time.Second, func() error {
		s, err = agent.CoreV1().Secrets(ns).Get(ctx, own, metav1.GetOptions{})
		if err != nil && !apierrors.IsForbidden(err) && !apierrors.IsNotFound(err) {
			t.Fatalf("reading its own plan Secret: %v", err)
		}
		return err
	})
	s.Data["applied-checksum"] = []byte("x")
	_, err = agent.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = agent.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + own})
	require.NoError(t, err)

	_, err = agent.CoreV1().Secrets(ns).Get(ctx, cfgB.Elemental.SystemAgent.SecretName, metav1.GetOptions{})
	assert.True(t, apierrors.IsForbidden(err), "another host's plan: %v", err)
	_, err = agent.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	assert.True(t, apierrors.IsForbidden(err), "unscoped list: %v", err)
	_, err = agent.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	assert.True(t, apierrors.IsForbidden(err), "create: %v", err)
	_, err = agent.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	assert.True(t, apierrors.IsForbidden(err), "configmaps: %v", err)
	_, err = agent.CoreV1().Secrets("default").Get(ctx, own, metav1.GetOptions{})
	assert.True(t, apierrors.IsForbidden(err), "other namespace: %v", err)

	// The credential is the inventory's own ServiceAccount.
	mi := inventoryByHash(t, ns, hashOf("52:54:00:01:01:01"))
	_, err = env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, credentials.Name(mi.Name), metav1.GetOptions{})
	require.NoError(t, err)
}
