//go:build cgo

package tpm

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	gotpm "github.com/rancher-sandbox/go-tpm"
)

// Available reports whether this build can use a TPM.
const Available = true

func (d Device) options() []gotpm.Option {
	if !d.Emulated {
		return nil
	}
	return []gotpm.Option{gotpm.Emulated, gotpm.WithSeed(d.Seed)}
}

// Attest opens the TPM, creates an attestation key and returns the header to
// dial with. The TPM is closed again; Answer reopens it.
func (d Device) Attest() (*Attestation, error) {
	if d.Emulated && d.Seed == 0 {
		// go-tpm gives seed 0 a fresh random TPM on every open, so the AK
		// could not be loaded again to answer the challenge: pick one
		// random seed for this run instead (still a new identity per run).
		d.Seed = 1 + rand.Int64N(math.MaxInt64-1)
	}
	header, ak, err := gotpm.GetAuthToken(d.options()...)
	if err != nil {
		if d.Emulated {
			return nil, fmt.Errorf("emulated TPM: %w", err)
		}
		return nil, fmt.Errorf("TPM: %w (no TPM 2.0 device? set emulate-tpm: true for a software TPM)", err)
	}
	hash, err := HashFromHeader(header)
	if err != nil {
		return nil, fmt.Errorf("TPM: decoding our own attestation data: %w", err)
	}
	return &Attestation{Header: header, Hash: hash, dev: d, ak: ak}, nil
}

// Answer reads the credential-activation challenge from ch, activates it with
// the EK and the attested AK, and writes the answer ({"Secret":…} + "\n").
func (a *Attestation) Answer(ch io.ReadWriter) error {
	return gotpm.Authenticate(a.ak, ch, a.dev.options()...)
}
