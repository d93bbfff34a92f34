//go:build cgo

package tpm

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-attestation/attest"
	gotpm "github.com/rancher-sandbox/go-tpm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// challenge plays the server (pkg/server does the same with go-attestation):
// it validates the AK, returns the challenge JSON and the expected secret.
func challenge(t *testing.T, header string) ([]byte, []byte) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(header, HeaderPrefix))
	require.NoError(t, err)
	var data struct {
		EK []byte
		AK *attest.AttestationParameters
	}
	require.NoError(t, json.Unmarshal(raw, &data))
	ek, err := gotpm.DecodeEK(data.EK)
	require.NoError(t, err)
	assert.Nil(t, ek.Certificate, "an emulated EK has no certificate")
	params := attest.ActivationParameters{TPMVersion: attest.TPMVersion20, EK: ek.Public, AK: *data.AK}
	secret, ec, err := params.Generate()
	require.NoError(t, err)
	ch, err := json.Marshal(struct{ EC *attest.EncryptedCredential }{ec})
	require.NoError(t, err)
	return ch, secret
}

type pipe struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (p *pipe) Read(b []byte) (int, error)  { return p.in.Read(b) }
func (p *pipe) Write(b []byte) (int, error) { return p.out.Write(b) }

func answer(t *testing.T, att *Attestation) ([]byte, []byte) {
	t.Helper()
	ch, secret := challenge(t, att.Header)
	p := &pipe{in: bytes.NewReader(ch)}
	require.NoError(t, att.Answer(p))
	return p.out.Bytes(), secret
}

func TestEmulated(t *testing.T) {
	a1, err := Device{Emulated: true, Seed: 7}.Attest()
	require.NoError(t, err)
	a2, err := Device{Emulated: true, Seed: 7}.Attest()
	require.NoError(t, err)
	b, err := Device{Emulated: true, Seed: 8}.Attest()
	require.NoError(t, err)

	// Same seed, same identity; go-tpm computes it the same way.
	assert.Regexp(t, `^[0-9a-f]{64}$`, a1.Hash)
	assert.Equal(t, a1.Hash, a2.Hash)
	assert.NotEqual(t, a1.Hash, b.Hash)
	want, err := gotpm.GetPubHash(gotpm.Emulated, gotpm.WithSeed(7))
	require.NoError(t, err)
	assert.Equal(t, want, a1.Hash)

	// The answer is {"Secret":…} and a newline, and holds the secret.
	out, secret := answer(t, a1)
	assert.True(t, bytes.HasPrefix(out, []byte(`{"Secret":"`)), "%s", out)
	assert.True(t, bytes.HasSuffix(out, []byte("\"}\n")), "%s", out)
	var ans struct{ Secret []byte }
	require.NoError(t, json.Unmarshal(out, &ans))
	assert.Equal(t, secret, ans.Secret)
}

// Seed 0 is a new identity on every run that still answers its challenge
// (go-tpm alone would reopen a different random TPM and fail to load the AK).
func TestEmulatedSeedZero(t *testing.T) {
	a, err := Device{Emulated: true}.Attest()
	require.NoError(t, err)
	b, err := Device{Emulated: true}.Attest()
	require.NoError(t, err)
	assert.NotEqual(t, a.Hash, b.Hash)
	out, secret := answer(t, a)
	var ans struct{ Secret []byte }
	require.NoError(t, json.Unmarshal(out, &ans))
	assert.Equal(t, secret, ans.Secret)
}

func TestHardwareTPMMissing(t *testing.T) {
	for _, dev := range []string{"/dev/tpmrm0", "/dev/tpm0"} {
		if _, err := os.Stat(dev); err == nil {
			t.Skipf("%s exists: this host has a TPM", dev)
		}
	}
	_, err := Device{}.Attest()
	require.Error(t, err)
	t.Log(err)
	assert.Contains(t, err.Error(), "emulate-tpm: true")
}
