//go:build !cgo

package tpm

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNoCgo(t *testing.T) {
	_, err := Device{Emulated: true, Seed: 1}.Attest()
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, (&Attestation{}).Answer(nil), ErrUnavailable)
}
