package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	reghost "github.com/elemental-operator/elemental-operator/pkg/register/host"
)

// fakeHost lays out what elemental-register reads on a host under root.
func fakeHost(t *testing.T, mac, url, ca string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"sys/class/net/lo/address":      "00:00:00:00:00:00\n",
		"sys/class/net/eth0/address":    mac + "\n",
		"sys/class/dmi/id/product_uuid": "4c4c4544-0000-1000-8000-000000000001\n",
		"sys/class/dmi/id/sys_vendor":   "QEMU\n",
		"etc/hostname":                  "edge-1\n",
	}
	cfg, err := yaml.Marshal(map[string]interface{}{"elemental": map[string]interface{}{"registration": map[string]interface{}{
		"url": url, "ca-cert": ca, "auth": "mac", "labels": map[string]string{"site": "lab"},
	}}})
	require.NoError(t, err)
	files["oem/registration/config.yaml"] = string(cfg)
	for p, c := range files {
		require.NoError(t, os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte(c), 0o644))
	}
	return root
}

// The elemental-register client, end to end: config and state files, host
// facts, the protocol, and the agent files of an unmanaged install.
func TestElementalRegisterClient(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "hosts", macRegistration())
	const mac = "52:54:00:aa:bb:01"
	root := fakeHost(t, mac, mr.Status.RegistrationURL, srv.CACert())

	reply, err := reghost.Run(ctx, reghost.Options{Root: root, Install: true, NoToolkit: true})
	require.NoError(t, err)
	mi := inventoryByHash(t, ns, hashOf(mac))
	require.NotNil(t, mi)
	assert.Equal(t, mi.Name, reply.Elemental.SystemAgent.SecretName)
	assert.Equal(t, "lab", mi.Labels["elemental.cattle.io/site"])
	assert.Equal(t, "true", mi.Annotations["elemental.cattle.io/os.unmanaged"])

	for _, p := range []string{reghost.ConnectionInfoPath, reghost.AgentConfigPath, reghost.AgentEnvsPath, reghost.StatePath} {
		fi, err := os.Stat(filepath.Join(root, p))
		require.NoError(t, err, p)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
	}
	var conn map[string]string
	data, err := os.ReadFile(filepath.Join(root, reghost.ConnectionInfoPath))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &conn))
	assert.Equal(t, ns, conn["namespace"])
	assert.Equal(t, mi.Name, conn["secretName"])
	assert.Contains(t, conn["kubeConfig"], "token: "+reply.Elemental.SystemAgent.Token)
	assert.Contains(t, conn["kubeConfig"], "server: "+reply.Elemental.SystemAgent.URL)
	state, err := os.ReadFile(filepath.Join(root, reghost.StatePath))
	require.NoError(t, err)
	assert.Contains(t, string(state), "initialRegistration:")

	// A later plain run re-registers (Update) into the same inventory.
	_, err = reghost.Run(ctx, reghost.Options{Root: root})
	require.NoError(t, err)
	again := inventoryByHash(t, ns, hashOf(mac))
	require.NotNil(t, again)
	assert.Equal(t, mi.UID, again.UID)

	// TPM is refused by this client with a clear message, before any request.
	cfg := filepath.Join(root, "oem/registration/config.yaml")
	raw, _ := os.ReadFile(cfg)
	require.NoError(t, os.WriteFile(cfg, []byte(replaceAuth(string(raw), "tpm")), 0o600))
	_, err = reghost.Run(ctx, reghost.Options{Root: root})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "auth tpm is not supported")
}

func replaceAuth(cfg, auth string) string {
	var c map[string]map[string]map[string]interface{}
	_ = yaml.Unmarshal([]byte(cfg), &c)
	c["elemental"]["registration"]["auth"] = auth
	out, _ := yaml.Marshal(c)
	return string(out)
}
