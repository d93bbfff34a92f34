package server

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestIdentityLabel(t *testing.T) {
	keyA := bytes.Repeat([]byte{1}, identityKeySize)
	keyB := bytes.Repeat([]byte{2}, identityKeySize)
	hash := strings.Repeat("ab", 32)
	plain := identity{hash: hash}
	tpm := identity{tpm: true, hash: hash}
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	labels := map[string]string{
		"plain, key A":     identityLabel(keyA, plain),
		"plain, key B":     identityLabel(keyB, plain),
		"tpm, key A":       identityLabel(keyA, tpm),
		"legacy (unkeyed)": legacyIdentityLabel(plain),
	}
	seen := map[string]string{}
	for name, l := range labels {
		if !hex32.MatchString(l) {
			t.Errorf("%s: %q is not 32 hex characters (a valid label value)", name, l)
		}
		if other, dup := seen[l]; dup {
			t.Errorf("%s and %s share the label %q", name, other, l)
		}
		seen[l] = name
	}
	if identityLabel(keyA, plain) != labels["plain, key A"] {
		t.Error("the keyed label is not deterministic")
	}
	if labels["legacy (unkeyed)"] != hash[:32] {
		t.Errorf("legacy label = %q, want the first 32 characters of the hash", labels["legacy (unkeyed)"])
	}
	// The keyed label is no prefix of the hash it stands for.
	if strings.Contains(hash, labels["plain, key A"]) {
		t.Error("the keyed label reveals the hash")
	}
}
