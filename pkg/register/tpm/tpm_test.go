package tpm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func header(t *testing.T, ek []byte) string {
	t.Helper()
	raw, err := json.Marshal(map[string]interface{}{"EK": ek, "AK": map[string]interface{}{}})
	require.NoError(t, err)
	return HeaderPrefix + base64.StdEncoding.EncodeToString(raw)
}

// The identity hash is sha256 over the EK public key's PKIX DER, whether the
// EK comes as a bare public key or inside a certificate.
func TestHashFromHeader(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	sum := sha256.Sum256(der)
	want := hex.EncodeToString(sum[:])

	got, err := HashFromHeader(header(t, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	require.NoError(t, err)
	assert.Equal(t, want, got)

	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ek"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	got, err = HashFromHeader(header(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})))
	require.NoError(t, err)
	assert.Equal(t, want, got)

	for _, bad := range []string{HeaderPrefix + "!!", HeaderPrefix + base64.StdEncoding.EncodeToString([]byte("{")),
		header(t, []byte("not pem")), header(t, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}}))} {
		_, err := HashFromHeader(bad)
		assert.Error(t, err, bad)
	}
}
