package host

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The emulated-TPM seed rules (see docs/contracts.md, elemental-register):
// -1 derives the seed from the SMBIOS UUID, 0 is a new identity every run.
func TestEmulatedSeed(t *testing.T) {
	const uuid = "fd95324a-c26b-4e28-8727-1dcec293a0ec"
	// Low 64 bits of 0xfd95324ac26b4e2887271dcec293a0ec, as int64.
	const fromUUID = int64(-0x78d8e2313d6c5f14) // 0x87271dcec293a0ec
	stored := State{EmulatedTPM: true, EmulatedTPMSeed: 42}

	assert.Equal(t, fromUUID, EmulatedSeed(-1, State{}, uuid))
	assert.Equal(t, int64(0x1dcec293a0ec), EmulatedSeed(-1, State{}, "00000000-0000-0000-0000-1dcec293a0ec"))
	assert.Equal(t, int64(42), EmulatedSeed(-1, stored, uuid))
	assert.Equal(t, int64(42), EmulatedSeed(7, stored, uuid))
	assert.Equal(t, int64(7), EmulatedSeed(7, State{}, uuid))
	assert.Equal(t, int64(0), EmulatedSeed(0, State{}, uuid))
	// A seed left in state by a non-emulated run does not count.
	assert.Equal(t, int64(7), EmulatedSeed(7, State{EmulatedTPMSeed: 42}, uuid))

	// No usable UUID: a random non-negative seed, different each time.
	a, b := EmulatedSeed(-1, State{}, ""), EmulatedSeed(-1, State{}, "Not Settable")
	assert.GreaterOrEqual(t, a, int64(0))
	assert.GreaterOrEqual(t, b, int64(0))
	assert.NotEqual(t, a, b)
}
