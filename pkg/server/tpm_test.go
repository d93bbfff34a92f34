package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mathrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
	reghost "github.com/elemental-operator/elemental-operator/pkg/register/host"
	regtpm "github.com/elemental-operator/elemental-operator/pkg/register/tpm"
)

// requireTPM skips TPM tests in builds without cgo (scripts/test installs
// gcc and libssl-dev when it can, so CI runs them).
func requireTPM(t *testing.T) {
	t.Helper()
	if !regtpm.Available {
		t.Skip("TPM tests need cgo (CGO_ENABLED=1, gcc and OpenSSL's libcrypto headers, e.g. Debian libssl-dev); this test binary was built without")
	}
}

func tpmRegistration() elementalv1.MachineRegistrationSpec {
	spec := elementalv1.MachineRegistrationSpec{
		MachineName:            "tpm-${Random/Hex/6}",
		MachineInventoryLabels: map[string]string{"element": "earth"},
	}
	spec.Config.Elemental.Registration.Auth = "tpm"
	return spec
}

// tpmHost lays out a host whose elemental-register config asks for an
// emulated TPM with the given seed.
func tpmHost(t *testing.T, url string, seed int64, uuid string, labels map[string]string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"sys/class/net/eth0/address":    "52:54:00:77:00:01\n",
		"sys/class/dmi/id/product_uuid": uuid + "\n",
		"etc/hostname":                  "tpm-host\n",
	}
	for p, c := range files {
		require.NoError(t, os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte(c), 0o644))
	}
	setConfig(t, root, func(r *reghost.Registration) {
		*r = reghost.Registration{URL: url, CACert: hostCA, Auth: "tpm", EmulateTPM: true, EmulatedTPMSeed: seed, Labels: labels}
	})
	return root
}

// newSeed is an emulated TPM nobody used yet (tests may run with -count > 1
// against the same apiserver).
func newSeed() int64 { return 1 + mathrand.Int64N(1<<62) }

// emulatedHash is the identity the simulator with this seed has.
func emulatedHash(t *testing.T, seed int64) string {
	t.Helper()
	att, err := regtpm.Device{Emulated: true, Seed: seed}.Attest()
	require.NoError(t, err)
	return att.Hash
}

func tpmInventories(t *testing.T, ns string) []elementalv1.MachineInventory {
	t.Helper()
	list, err := inventories.List(ns, metav1.ListOptions{})
	require.NoError(t, err)
	return list.Items
}

// inventoryByTPMHash looks in every namespace.
func inventoryByTPMHash(t *testing.T, hash string) *elementalv1.MachineInventory {
	t.Helper()
	list, err := inventories.List("", metav1.ListOptions{})
	require.NoError(t, err)
	for i := range list.Items {
		if list.Items[i].Spec.TPMHash == hash {
			return &list.Items[i]
		}
	}
	return nil
}

// Emulated-TPM hosts run our elemental-register end to end: credential
// activation with the real framing, one inventory per TPM, state-file seed
// persistence, re-registration (Update) into the same inventory.
func TestTPMEmulatedHosts(t *testing.T) {
	requireTPM(t)
	ctx := context.Background()
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "earth", tpmRegistration())
	url := mr.Status.RegistrationURL

	hostUUID := uuid.NewString()
	uuidSeed := reghost.EmulatedSeed(-1, reghost.State{}, hostUUID)
	require.NotZero(t, uuidSeed)
	seed0, seed1 := newSeed(), newSeed()
	hosts := []struct {
		configSeed, seed int64
		uuid             string
	}{
		{seed0, seed0, "00000000-0000-0000-0000-000000000001"},
		{seed1, seed1, "00000000-0000-0000-0000-000000000002"},
		{-1, uuidSeed, hostUUID}, // derived from the SMBIOS UUID
	}
	roots := make([]string, len(hosts))
	mis := make([]*elementalv1.MachineInventory, len(hosts))
	for i, h := range hosts {
		roots[i] = tpmHost(t, url, h.configSeed, h.uuid, map[string]string{"site": fmt.Sprintf("lab-%d", i)})
		reply, err := reghost.Run(ctx, reghost.Options{Root: roots[i]})
		require.NoError(t, err, "host %d", i)
		mi, err := inventories.Get(ns, reply.Elemental.SystemAgent.SecretName, metav1.GetOptions{})
		require.NoError(t, err)
		mis[i] = mi
		hash := emulatedHash(t, h.seed)
		assert.Equal(t, hash, mi.Spec.TPMHash, "host %d", i)
		assert.Empty(t, mi.Spec.MachineHash)
		assert.Equal(t, keyedLabel(t, true, hash), mi.Labels[elementalv1.IdentityHashLabel])
		assert.Equal(t, fmt.Sprintf("lab-%d", i), mi.Labels["elemental.cattle.io/site"])
		assert.Equal(t, "earth", mi.Labels["element"])
		assert.Equal(t, "emulated-tpm", mi.Annotations["elemental.cattle.io/auth"])
		assert.Regexp(t, `^tpm-[0-9a-f]{6}$`, mi.Name)
		st := readState(t, roots[i])
		assert.NotNil(t, st.InitialRegistration)
		assert.True(t, st.EmulatedTPM)
		assert.Equal(t, h.seed, st.EmulatedTPMSeed, "host %d: the seed used is kept in state", i)
	}
	require.Len(t, tpmInventories(t, ns), len(hosts), "one inventory per TPM")

	// Re-registration from the installed host (state file → Update): the
	// state's seed wins over a changed config seed, labels are updated.
	setConfig(t, roots[0], func(r *reghost.Registration) {
		r.EmulatedTPMSeed = newSeed()
		r.Labels = map[string]string{"site": "moved"}
	})
	reply, err := reghost.Run(ctx, reghost.Options{Root: roots[0]})
	require.NoError(t, err)
	assert.Equal(t, mis[0].Name, reply.Elemental.SystemAgent.SecretName)
	again, err := inventories.Get(ns, mis[0].Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, mis[0].UID, again.UID)
	assert.Equal(t, "moved", again.Labels["elemental.cattle.io/site"])
	assert.Equal(t, seed0, readState(t, roots[0]).EmulatedTPMSeed)

	// The same seed on a freshly installed host (no state): the same TPM, so
	// the same inventory.
	fresh := tpmHost(t, url, seed1, "00000000-0000-0000-0000-0000000000ff", map[string]string{"site": "reinstalled"})
	reply, err = reghost.Run(ctx, reghost.Options{Root: fresh})
	require.NoError(t, err)
	assert.Equal(t, mis[1].Name, reply.Elemental.SystemAgent.SecretName)
	again, err = inventories.Get(ns, mis[1].Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, mis[1].UID, again.UID)
	assert.Equal(t, "reinstalled", again.Labels["elemental.cattle.io/site"])
	require.Len(t, tpmInventories(t, ns), len(hosts), "no new inventory")
	var reregistered int
	for _, e := range events(t, ns) {
		if e.Reason == "ReRegistered" && (e.InvolvedObject.Name == mis[0].Name || e.InvolvedObject.Name == mis[1].Name) {
			reregistered++
		}
	}
	assert.Equal(t, 2, reregistered)

	// The installed host really sends Update: with its inventory gone, the
	// server answers "MachineInventory not found".
	require.NoError(t, inventories.Delete(ns, mis[2].Name, &metav1.DeleteOptions{}))
	eventually(t, 20*time.Second, func() error {
		if _, err := inventories.Get(ns, mis[2].Name, metav1.GetOptions{}); !isNotFound(err) {
			return fmt.Errorf("inventory still there: %v", err)
		}
		return nil
	})
	_, err = reghost.Run(ctx, reghost.Options{Root: roots[2]})
	require.Error(t, err)
	assert.Equal(t, "update error: MachineInventory not found", err.Error())
}

// The registration's auth method decides: a TPM host cannot use a mac
// registration, a mac host cannot use a TPM one; nothing is created.
func TestTPMAuthMismatch(t *testing.T) {
	requireTPM(t)
	ctx := context.Background()
	ns := newNamespace(t)
	macMR := newRegistration(t, ns, "mac", macRegistration())
	tpmMR := newRegistration(t, ns, "tpm", tpmRegistration())

	seed := newSeed()
	_, err := reghost.Run(ctx, reghost.Options{Root: tpmHost(t, macMR.Status.RegistrationURL, seed, "00000000-0000-0000-0000-000000000021", nil)})
	require.Error(t, err)
	assert.Equal(t, "registration refused: MachineRegistration "+ns+"/mac requires mac authentication", err.Error())

	_, err = reghost.Run(ctx, reghost.Options{Root: fakeHost(t, "52:54:00:77:00:22", tpmMR.Status.RegistrationURL, hostCA)})
	require.Error(t, err)
	assert.Equal(t, "registration refused: MachineRegistration "+ns+"/tpm requires tpm authentication", err.Error())

	assert.Empty(t, tpmInventories(t, ns))
	assert.Nil(t, inventoryByTPMHash(t, emulatedHash(t, seed)))
}

// selfSignedCA is a CA certificate in PEM.
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "TPM vendor CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// With a tpm-ca Secret in the registration's namespace, an EK must carry a
// certificate from that CA: an emulated EK (no certificate) is refused.
func TestTPMCASecret(t *testing.T) {
	requireTPM(t)
	ctx := context.Background()
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "vetted", tpmRegistration())
	_, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tpm-ca"},
		Data:       map[string][]byte{corev1.TLSCertKey: selfSignedCA(t)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	seed := newSeed()
	att, err := regtpm.Device{Emulated: true, Seed: seed}.Attest()
	require.NoError(t, err)
	ws, code, body := dial(t, mr.Status.RegistrationURL, att.Header)
	if ws != nil {
		_ = ws.Close()
	}
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Equal(t, "EK certificate verification failed", body)

	root := tpmHost(t, mr.Status.RegistrationURL, seed, "00000000-0000-0000-0000-000000000031", nil)
	_, err = reghost.Run(ctx, reghost.Options{Root: root})
	require.Error(t, err)
	assert.Equal(t, "registration refused: EK certificate verification failed", err.Error())
	assert.Empty(t, tpmInventories(t, ns))
	_, err = os.Stat(filepath.Join(root, reghost.StatePath))
	assert.True(t, os.IsNotExist(err), "no state after a refusal")

	// Without the Secret the same host registers: the Secret was the reason.
	require.NoError(t, env.Client.CoreV1().Secrets(ns).Delete(ctx, "tpm-ca", metav1.DeleteOptions{}))
	_, err = reghost.Run(ctx, reghost.Options{Root: root})
	require.NoError(t, err)
	mi := inventoryByHash(t, ns, att.Hash)
	require.NotNil(t, mi)
}

// rwFuncs adapts functions to an io.ReadWriter.
type rwFuncs struct {
	read  func([]byte) (int, error)
	write func([]byte) (int, error)
}

func (f rwFuncs) Read(p []byte) (int, error)  { return f.read(p) }
func (f rwFuncs) Write(p []byte) (int, error) { return f.write(p) }

// A wrong or replayed answer to the credential-activation challenge closes
// the connection with 1008 "TPM credential activation failed"; nothing is
// created. The same attestation answered properly then registers.
func TestTPMWrongAnswer(t *testing.T) {
	requireTPM(t)
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "strict", tpmRegistration())
	att, err := regtpm.Device{Emulated: true, Seed: newSeed()}.Attest()
	require.NoError(t, err)
	registerTPM := func(answer func(ch io.ReadWriter) error) error {
		_, err := client.Register(context.Background(), client.Request{
			URL: mr.Status.RegistrationURL, CACert: hostCA,
			Authorization: att.Header, Authenticate: answer,
			Annotations: map[string]string{"auth": "emulated-tpm"},
		})
		return err
	}
	readChallenge := func(ch io.ReadWriter) error {
		buf := make([]byte, 4096)
		n, err := ch.Read(buf)
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(buf[:n], []byte(`{"EC":{"Credential":"`)) {
			return fmt.Errorf("unexpected challenge %q", buf[:n])
		}
		return nil
	}
	const failed = "TPM authentication failed: expecting auth reply: websocket: close 1008 (policy violation): TPM credential activation failed"

	// A made-up secret.
	err = registerTPM(func(ch io.ReadWriter) error {
		if err := readChallenge(ch); err != nil {
			return err
		}
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		_, err := ch.Write([]byte(`{"Secret":"` + base64.StdEncoding.EncodeToString(secret) + "\"}\n"))
		return err
	})
	require.Error(t, err)
	assert.Equal(t, failed, err.Error())

	// Not JSON at all.
	err = registerTPM(func(ch io.ReadWriter) error {
		if err := readChallenge(ch); err != nil {
			return err
		}
		_, err := ch.Write([]byte("nonsense"))
		return err
	})
	require.Error(t, err)
	assert.Equal(t, failed, err.Error())

	// A genuine answer, captured on one connection, replayed on the next:
	// every connection has its own secret.
	var captured []byte
	errCaptured := errors.New("captured, not sent")
	err = registerTPM(func(ch io.ReadWriter) error {
		if err := att.Answer(rwFuncs{read: ch.Read, write: func(p []byte) (int, error) {
			captured = append([]byte(nil), p...)
			return len(p), nil
		}}); err != nil {
			return err
		}
		return errCaptured
	})
	require.ErrorIs(t, err, errCaptured)
	require.True(t, bytes.HasPrefix(captured, []byte(`{"Secret":"`)), "%q", captured)
	err = registerTPM(func(ch io.ReadWriter) error {
		if err := readChallenge(ch); err != nil {
			return err
		}
		_, err := ch.Write(captured)
		return err
	})
	require.Error(t, err)
	assert.Equal(t, failed, err.Error())

	assert.Empty(t, tpmInventories(t, ns))
	assert.Nil(t, inventoryByTPMHash(t, att.Hash))
	eventually(t, 10*time.Second, func() error {
		var reported int32
		for _, e := range events(t, ns) {
			if e.Reason == "RegistrationFailed" && e.InvolvedObject.Name == mr.Name && strings.HasSuffix(e.Message, ": TPM credential activation failed") {
				reported += max(e.Count, 1)
			}
		}
		if reported < 3 {
			return fmt.Errorf("%d RegistrationFailed events for the failed activations", reported)
		}
		return nil
	})

	// The same attestation, answered by its TPM, registers.
	require.NoError(t, registerTPM(att.Answer))
	mi := inventoryByHash(t, ns, att.Hash)
	require.NotNil(t, mi)
	assert.Equal(t, "emulated-tpm", mi.Annotations["elemental.cattle.io/auth"])
}
