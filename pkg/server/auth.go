package server

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-attestation/attest"
)

const (
	tpmPrefix   = "Bearer TPM"
	plainPrefix = "Bearer PLAIN"
	maxPlainID  = 255
)

// identity is who a host claims to be, established before the upgrade.
type identity struct {
	tpm  bool
	hash string // spec.tpmHash or spec.machineHash
	// TPM only: the credential-activation challenge and its expected answer.
	challenge []byte
	secret    []byte
	ekCert    *x509.Certificate
}

// indexKey is the identity's key in the inventory index: the TPM and PLAIN
// hash spaces never mix.
func (id identity) indexKey() string {
	if id.tpm {
		return "tpm/" + id.hash
	}
	return "plain/" + id.hash
}

// authError is refused with 401 and its text.
type authError struct{ msg string }

func (e *authError) Error() string { return e.msg }

func refuse(format string, args ...interface{}) error {
	return &authError{msg: fmt.Sprintf(format, args...)}
}

// authMethod is what the header asks for: "tpm" or "plain".
func authMethod(header string) (string, error) {
	switch {
	case header == "":
		return "", refuse("missing Authorization header")
	case strings.HasPrefix(header, tpmPrefix):
		return "tpm", nil
	case strings.HasPrefix(header, plainPrefix):
		return "plain", nil
	}
	return "", refuse("unrecognized authentication method")
}

// methodAllowed enforces the registration's auth: tpm (the default) admits
// only TPM hosts, mac and sys-uuid only PLAIN ones.
func methodAllowed(mrAuth, method string) bool {
	switch mrAuth {
	case "", "tpm":
		return method == "tpm"
	case "mac", "sys-uuid":
		return method == "plain"
	}
	return false
}

// plainIdentity validates a PLAIN id: non-empty, ≤ 255 bytes, printable ASCII.
func plainIdentity(header string) (identity, error) {
	id := strings.TrimPrefix(header, plainPrefix)
	if id == "" || len(id) > maxPlainID {
		return identity{}, refuse("invalid machine identifier")
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return identity{}, refuse("invalid machine identifier")
		}
	}
	sum := sha256.Sum256([]byte(id))
	return identity{hash: hex.EncodeToString(sum[:])}, nil
}

// attestationData is the JSON inside a TPM header (see docs/contracts.md, elemental-register).
type attestationData struct {
	EK []byte
	AK *attest.AttestationParameters
}

// challenge is the first server message on a TPM connection.
type challenge struct {
	EC *attest.EncryptedCredential
}

// challengeAnswer is the client's reply to it.
type challengeAnswer struct {
	Secret []byte
}

// tpmIdentity decodes the header, parses the EK and generates the
// credential-activation challenge (which also validates the AK).
func tpmIdentity(header string) (identity, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(header, tpmPrefix))
	if err != nil {
		return identity{}, refuse("invalid TPM attestation data: %v", err)
	}
	var data attestationData
	if err := json.Unmarshal(raw, &data); err != nil {
		return identity{}, refuse("invalid TPM attestation data: %v", err)
	}
	if data.AK == nil {
		return identity{}, refuse("invalid TPM attestation data: no AK")
	}
	pub, cert, err := parseEK(data.EK)
	if err != nil {
		return identity{}, refuse("invalid TPM attestation data: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return identity{}, refuse("invalid TPM attestation data: %v", err)
	}
	params := attest.ActivationParameters{TPMVersion: attest.TPMVersion20, EK: pub, AK: *data.AK}
	secret, ec, err := params.Generate()
	if err != nil {
		return identity{}, refuse("invalid TPM attestation data: %v", err)
	}
	// Compact JSON, sent as one frame: the real client reads it with a
	// 512-byte first read.
	ch, err := json.Marshal(challenge{EC: ec})
	if err != nil {
		return identity{}, err
	}
	sum := sha256.Sum256(der)
	return identity{tpm: true, hash: hex.EncodeToString(sum[:]), challenge: ch, secret: secret, ekCert: cert}, nil
}

func parseEK(pemBytes []byte) (crypto.PublicKey, *x509.Certificate, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, nil, errors.New("EK is not PEM")
	}
	switch block.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, err
		}
		return cert.PublicKey, cert, nil
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		return pub, nil, err
	}
	return nil, nil, fmt.Errorf("unexpected EK PEM block %q", block.Type)
}

// verifyAnswer checks the client's answer in constant time.
func verifyAnswer(id identity, payload []byte) bool {
	var ans challengeAnswer
	if err := json.Unmarshal(payload, &ans); err != nil {
		return false
	}
	return len(ans.Secret) == len(id.secret) && subtle.ConstantTimeCompare(ans.Secret, id.secret) == 1
}

// verifyEKCert checks the EK certificate against the namespace's tpm-ca
// roots. Any key usage is accepted: EK certificates carry only the TCG EK
// purpose, which the default (serverAuth) would reject (upstream bug).
func verifyEKCert(cert *x509.Certificate, rootsPEM []byte) error {
	if cert == nil {
		return refuse("EK certificate verification failed")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootsPEM) {
		return refuse("EK certificate verification failed")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return refuse("EK certificate verification failed")
	}
	return nil
}
