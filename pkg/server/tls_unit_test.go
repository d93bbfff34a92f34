package server

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// A re-issued generated certificate keeps the registration hosts the old one
// covered (never the built-in names twice), the most recent ones when over
// the cap, so replicas with different URLs converge.
func TestPreviousHosts(t *testing.T) {
	ca, err := newCA()
	require.NoError(t, err)
	issue := func(previous []string, baseURL string) []byte {
		s, err := generateTLSSecret("ns", previous, baseURL, ca)
		require.NoError(t, err)
		return s.Data[corev1.TLSCertKey]
	}
	assert.Empty(t, previousHosts(issue(nil, ""), "ns"), "built-in names only")
	assert.Equal(t, []string{"reg-a.example"}, previousHosts(issue(nil, "https://reg-a.example:8443"), "ns"))
	assert.Equal(t, []string{"reg-a.example", "10.0.0.9"}, previousHosts(issue([]string{"reg-a.example"}, "https://10.0.0.9"), "ns"),
		"names first, then addresses")
	assert.Nil(t, previousHosts([]byte("not PEM"), "ns"))

	var many []string
	for i := range maxPreviousHosts + 4 {
		many = append(many, fmt.Sprintf("reg-%02d.example", i))
	}
	got := previousHosts(issue(many, ""), "ns")
	assert.Equal(t, many[4:], got, "the most recent maxPreviousHosts")
	assert.True(t, covers(issue(got, "https://new.example"), "new.example"))
	assert.True(t, covers(issue(got, "https://new.example"), many[len(many)-1]))
}
