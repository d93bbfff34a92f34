//go:build !cgo

package tpm

import "io"

// Available reports whether this build can use a TPM.
const Available = false

// Attest fails: TPM support needs cgo.
func (d Device) Attest() (*Attestation, error) { return nil, ErrUnavailable }

// Answer fails: TPM support needs cgo.
func (a *Attestation) Answer(io.ReadWriter) error { return ErrUnavailable }
