package tunnel

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
)

func secret(data map[string]string) *corev1.Secret {
	s := &corev1.Secret{Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secret *corev1.Secret
		url    string
		wait   string
		verify bool
	}{
		{name: "missing", secret: nil, wait: "does not exist"},
		{name: "empty", secret: secret(nil), wait: "no url and no token"},
		{name: "no token", secret: secret(map[string]string{"url": "https://r/v3/connect"}), wait: "no token"},
		{name: "no url", secret: secret(map[string]string{"token": "t"}), wait: "no url"},
		{name: "bad scheme", secret: secret(map[string]string{"url": "ftp://r/v3/connect", "token": "t"}), wait: "scheme"},
		{name: "not a url", secret: secret(map[string]string{"url": "::", "token": "t"}), wait: "not a URL"},
		{name: "garbage ca", secret: secret(map[string]string{"url": "https://r/v3/connect", "token": "t", "ca.crt": "nope"}), wait: "no PEM"},
		{name: "https", secret: secret(map[string]string{"url": "https://r:8443/v3/connect", "token": "t"}), url: "wss://r:8443/v3/connect", verify: true},
		{name: "http", secret: secret(map[string]string{"url": "http://r/v3/connect", "token": " t\n"}), url: "ws://r/v3/connect", verify: true},
		{name: "empty ca skips verify", secret: secret(map[string]string{"url": "https://r/v3/connect", "token": "t", "ca.crt": ""}), url: "wss://r/v3/connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, wait := parseTarget(tc.secret)
			if tc.wait != "" {
				assert.Contains(t, wait, tc.wait)
				return
			}
			assert.Empty(t, wait)
			assert.Equal(t, tc.url, got.url)
			assert.Equal(t, "t", got.token)
			assert.Equal(t, !tc.verify, got.tlsConfig().InsecureSkipVerify)
		})
	}
}

func TestTargetEqual(t *testing.T) {
	a, _ := parseTarget(secret(map[string]string{"url": "https://r/v3/connect", "token": "t"}))
	b, _ := parseTarget(secret(map[string]string{"url": "https://r/v3/connect", "token": "t"}))
	assert.True(t, a.equal(b))
	c, _ := parseTarget(secret(map[string]string{"url": "https://r/v3/connect", "token": "u"}))
	assert.False(t, a.equal(c), "a new token reconnects")
	d, _ := parseTarget(secret(map[string]string{"url": "https://r/v3/connect", "token": "t", "ca.crt": ""}))
	assert.False(t, a.equal(d), "a new CA setting reconnects")
	assert.Equal(t, "r", a.host())
}

func TestBackoff(t *testing.T) {
	for attempt, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second} {
		assert.Equal(t, want, backoff(attempt, time.Second, 30*time.Second), "attempt %d", attempt)
	}
	assert.Equal(t, 30*time.Second, backoff(1000, time.Second, 30*time.Second), "no overflow")
}
