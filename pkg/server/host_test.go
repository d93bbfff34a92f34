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
	regtpm "github.com/elemental-operator/elemental-operator/pkg/register/tpm"
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
	root := fakeHost(t, mac, mr.Status.RegistrationURL, hostCA)

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

	// Switched to an emulated TPM, the host is refused by this mac
	// registration (or, built without cgo, stops before any request).
	setConfig(t, root, func(r *reghost.Registration) { r.Auth, r.EmulateTPM, r.EmulatedTPMSeed = "tpm", true, 77 })
	_, err = reghost.Run(ctx, reghost.Options{Root: root})
	require.Error(t, err)
	if regtpm.Available {
		assert.Equal(t, "registration refused: MachineRegistration "+ns+"/hosts requires mac authentication", err.Error())
	} else {
		assert.ErrorIs(t, err, regtpm.ErrUnavailable)
	}
	st := readState(t, root)
	assert.False(t, st.EmulatedTPM, "a failed run leaves the state alone")
}

// setConfig edits the host's elemental-register config.
func setConfig(t *testing.T, root string, change func(*reghost.Registration)) {
	t.Helper()
	path := filepath.Join(root, reghost.ConfigPath)
	var c reghost.Config
	if data, err := os.ReadFile(path); err == nil {
		require.NoError(t, yaml.Unmarshal(data, &c))
	}
	change(&c.Elemental.Registration)
	data, err := yaml.Marshal(c)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
	require.NoError(t, os.WriteFile(path, data, 0o600))
}

func readState(t *testing.T, root string) reghost.State {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, reghost.StatePath))
	require.NoError(t, err)
	var s reghost.State
	require.NoError(t, yaml.Unmarshal(data, &s))
	return s
}
