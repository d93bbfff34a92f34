// Package tpm is the host's TPM side of registration (see docs/contracts.md,
// elemental-register): it attests a hardware TPM or the in-process TPM
// simulator and answers the server's credential-activation challenge. The TPM code is
// github.com/rancher-sandbox/go-tpm, the module upstream elemental-register
// uses, which needs cgo (a C compiler and OpenSSL's libcrypto headers). A
// build without cgo compiles a twin that reports ErrUnavailable, so
// CGO_ENABLED=0 builds still work for mac and sys-uuid hosts.
//
// The pure-Go parts are here and build everywhere.
package tpm

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// HeaderPrefix starts every TPM Authorization header.
const HeaderPrefix = "Bearer TPM"

// ErrUnavailable is returned by builds without cgo.
var ErrUnavailable = errors.New("auth tpm needs an elemental-register built with cgo " +
	"(CGO_ENABLED=1, gcc and OpenSSL's libcrypto headers, e.g. Debian libssl-dev); " +
	"this one was built without: use auth mac or sys-uuid, or rebuild it")

// Device selects the TPM: the host's (/dev/tpmrm0 or /dev/tpm0) or, when
// Emulated, the in-process simulator whose keys derive from Seed.
type Device struct {
	Emulated bool
	// Seed makes the simulator deterministic: the same seed gives the same
	// EK, and so the same identity. 0 means a random identity on every run.
	Seed int64
}

// Attestation is one attested AK, good for answering one challenge.
type Attestation struct {
	// Header is the Authorization header: "Bearer TPM" + base64(JSON{EK, AK}).
	Header string
	// Hash is the identity the server derives from the EK (spec.tpmHash).
	Hash string

	dev Device // the seed actually used (a random one replaces 0)
	ak  []byte // the AK blob, loaded again to activate the credential
}

// HashFromHeader is the server's identity hash of a TPM Authorization header:
// lowercase hex sha256 of the PKIX DER of the EK public key.
func HashFromHeader(header string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(header, HeaderPrefix))
	if err != nil {
		return "", err
	}
	var data struct{ EK []byte }
	if err := json.Unmarshal(raw, &data); err != nil {
		return "", err
	}
	block, _ := pem.Decode(data.EK)
	if block == nil {
		return "", errors.New("EK is not PEM")
	}
	var pub interface{}
	switch block.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return "", err
		}
		pub = cert.PublicKey
	case "PUBLIC KEY":
		if pub, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("unexpected EK PEM block %q", block.Type)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}
