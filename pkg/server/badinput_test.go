package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
)

func dial(t *testing.T, url, auth string) (*websocket.Conn, int, string) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(hostCA))
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, HandshakeTimeout: 5 * time.Second}
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	ws, resp, err := d.Dial(strings.Replace(url, "http", "ws", 1), h)
	if err != nil {
		require.NotNil(t, resp, err)
		body, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, string(body)
	}
	return ws, 101, ""
}

func TestRefusedBeforeUpgrade(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "fire", macRegistration())
	url := mr.Status.RegistrationURL
	unknownMethod := "unrecognized authentication method"
	if rancher != nil {
		// Rancher's proxy forwards only a Bearer credential of a caller it
		// does not know; any other Authorization header is dropped.
		unknownMethod = "missing Authorization header"
	}

	for _, tc := range []struct{ name, url, auth, body string }{
		{"unknown token", baseURL + "/elemental/registration/nosuchtoken", "Bearer PLAINx", "unknown registration token"},
		{"missing header", url, "", "missing Authorization header"},
		{"unknown method", url, "Basic abc", unknownMethod},
		{"wrong method", url, "Bearer TPM" + base64.StdEncoding.EncodeToString([]byte(`{}`)), "MachineRegistration " + ns + "/fire requires mac authentication"},
		{"empty id", url, "Bearer PLAIN", "invalid machine identifier"},
		{"control chars", url, "Bearer PLAINa\tb", "invalid machine identifier"},
		{"oversized id", url, "Bearer PLAIN" + strings.Repeat("a", 256), "invalid machine identifier"},
	} {
		_, code, body := dial(t, tc.url, tc.auth)
		assert.Equal(t, http.StatusUnauthorized, code, tc.name)
		assert.Equal(t, tc.body, body, tc.name)
	}
	code, body := plainGet(t, baseURL+"/elemental/registration/nosuchtoken")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Equal(t, "unknown registration token", body)
	code, _ = plainGet(t, baseURL+"/elemental/other")
	assert.Equal(t, http.StatusNotFound, code)
	resp, err := httpClient().Post(url, "text/plain", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	// No RegistrationFailed event leaks the token.
	for _, e := range events(t, ns) {
		assert.NotContains(t, e.Message, mr.Status.RegistrationToken)
	}
}

func TestTPMRefusals(t *testing.T) {
	ns := newNamespace(t)
	spec := elementalv1.MachineRegistrationSpec{}
	spec.Config.Elemental.Registration.Auth = "tpm"
	mr := newRegistration(t, ns, "tpm", spec)
	for _, auth := range []string{
		"Bearer TPM!!!notbase64",
		"Bearer TPM" + base64.StdEncoding.EncodeToString([]byte(`not json`)),
		"Bearer TPM" + base64.StdEncoding.EncodeToString([]byte(`{"EK":"bm90IHBlbQ==","AK":{}}`)),
		"Bearer TPM" + base64.StdEncoding.EncodeToString([]byte(`{"EK":"bm90IHBlbQ=="}`)),
	} {
		_, code, body := dial(t, mr.Status.RegistrationURL, auth)
		assert.Equal(t, http.StatusUnauthorized, code)
		assert.True(t, strings.HasPrefix(body, "invalid TPM attestation data: "), body)
	}
	_, code, body := dial(t, mr.Status.RegistrationURL, "Bearer PLAINx")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Equal(t, "MachineRegistration "+ns+"/tpm requires tpm authentication", body)
}

func TestNotReadyRegistration(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "fire", macRegistration())
	cur, err := registrations.Get(ns, "fire", metav1.GetOptions{})
	require.NoError(t, err)
	cur.Spec.Config.Elemental.Registration.Auth = "bogus"
	_, err = registrations.Update(cur)
	require.NoError(t, err)
	eventually(t, 20*time.Second, func() error {
		code, body := plainGet(t, mr.Status.RegistrationURL)
		if code != http.StatusServiceUnavailable {
			return assert.AnError
		}
		assert.Equal(t, "MachineRegistration "+ns+"/fire is not ready: InvalidConfiguration", body)
		return nil
	})
	_, code, body := dial(t, mr.Status.RegistrationURL, "Bearer PLAINx")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, body, "is not ready: InvalidConfiguration")
}

func TestDuplicateIdentityAcrossNamespaces(t *testing.T) {
	mr1 := newRegistration(t, newNamespace(t), "a", macRegistration())
	mr2 := newRegistration(t, newNamespace(t), "b", macRegistration())
	_, err := register(t, mr1, host{id: "52:54:00:dd:dd:dd"})
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() error {
		_, code, body := dial(t, mr2.Status.RegistrationURL, "Bearer PLAIN52:54:00:dd:dd:dd")
		if code != http.StatusUnauthorized {
			return assert.AnError
		}
		assert.Equal(t, "machine identity is already registered in another namespace", body)
		return nil
	})
}

func TestNameCollision(t *testing.T) {
	ns := newNamespace(t)
	spec := macRegistration()
	spec.MachineName = "fixed-name"
	mr := newRegistration(t, ns, "fire", spec)
	_, err := register(t, mr, host{id: "52:54:00:c0:c0:01"})
	require.NoError(t, err)
	_, err = register(t, mr, host{id: "52:54:00:c0:c0:02"})
	require.Error(t, err)
	assert.Equal(t, "MachineInventory name fixed-name is already used in "+ns+" by another machine; make spec.machineName unique (e.g. add ${Random/Hex/6})", err.Error())
	assert.Nil(t, inventoryByHash(t, ns, hashOf("52:54:00:c0:c0:02")), "nothing half-created")

	// A name template that renders to nothing valid.
	spec.MachineName = "${Runtime/Hostname}"
	mr2 := newRegistration(t, ns, "empty-name", spec)
	ws, _, _ := dial(t, mr2.Status.RegistrationURL, "Bearer PLAIN52:54:00:c0:c0:03")
	c := start(t, ws)
	require.NoError(t, c.Write(protocol.MsgSystemDataV2, []byte(`{"Runtime":{"Hostname":"!!!"}}`)))
	_, err = c.Expect(protocol.MsgReady)
	require.NoError(t, err)
	require.NoError(t, c.Write(protocol.MsgGet, nil))
	_, err = c.Expect(protocol.MsgConfig)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `invalid MachineInventory name "!!!" rendered from spec.machineName`)
}

// start reads Ready and negotiates version 12.
func start(t *testing.T, ws *websocket.Conn) *protocol.Conn {
	t.Helper()
	require.NotNil(t, ws)
	c := protocol.NewConn(ws, 5*time.Second, time.Time{})
	_, err := c.Expect(protocol.MsgReady)
	require.NoError(t, err)
	require.NoError(t, c.Write(protocol.MsgVersion, []byte{0x0D}))
	v, err := c.Expect(protocol.MsgVersion)
	require.NoError(t, err)
	require.Equal(t, []byte{0x0C}, v, "05 0D gets 05 0C")
	return c
}

func TestProtocolErrors(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "fire", macRegistration())
	url := mr.Status.RegistrationURL
	expectCode := func(t *testing.T, send func(ws *websocket.Conn), want string, code int) {
		ws, _, _ := dial(t, url, "Bearer PLAIN52:54:00:e0:e0:e0")
		c := start(t, ws)
		send(ws)
		_, err := c.Expect(protocol.MsgReady)
		require.Error(t, err)
		assert.Contains(t, err.Error(), want)
		_, err = c.ReadRaw() // then the Close frame
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, code, ce.Code)
	}
	expectError := func(t *testing.T, send func(ws *websocket.Conn), want string) {
		expectCode(t, send, want, websocket.ClosePolicyViolation)
	}
	bin := func(b []byte) func(*websocket.Conn) {
		return func(ws *websocket.Conn) { require.NoError(t, ws.WriteMessage(websocket.BinaryMessage, b)) }
	}
	expectError(t, bin([]byte{0x0D}), "unknown message")
	expectError(t, bin([]byte{}), "empty message")
	expectError(t, bin([]byte{0x07}), "unexpected message 'Config'")
	expectError(t, bin([]byte{0x01}), "unexpected message 'Ready'")
	expectError(t, bin([]byte{0x05, 0x0C}), "Version must be the first message")
	expectError(t, bin(append([]byte{0x03}, `{"a":1}`...)), "invalid JSON payload")
	expectError(t, bin(append([]byte{0x02}, `[1]`...)), "invalid JSON payload")
	expectError(t, func(ws *websocket.Conn) { require.NoError(t, ws.WriteMessage(websocket.TextMessage, []byte{0x04})) }, "text messages")
	// Oversized: the WebSocket layer closes with 1009 (message too big).
	expectCode(t, bin(append([]byte{0x0B}, make([]byte, protocol.MaxMessageSize+1)...)), "", websocket.CloseMessageTooBig)

	// Old protocol: Close 1002.
	ws, _, _ := dial(t, url, "Bearer PLAIN52:54:00:e0:e0:e1")
	c := protocol.NewConn(ws, 5*time.Second, time.Time{})
	_, err := c.Expect(protocol.MsgReady)
	require.NoError(t, err)
	require.NoError(t, c.Write(protocol.MsgVersion, []byte{4}))
	_, err = c.ReadRaw()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, websocket.CloseProtocolError, ce.Code)
	assert.Equal(t, "elemental-register protocol version is deprecated", ce.Text)
}

// A stalled client fails after one message timeout, not the whole budget,
// and a slow-but-steady client is not cut off by it.
func TestStalledClient(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "fire", macRegistration())
	ws, _, _ := dial(t, mr.Status.RegistrationURL, "Bearer PLAIN52:54:00:f0:f0:f0")
	c := start(t, ws)
	for i := 0; i < 3; i++ { // 3 × 1.2 s > one message timeout (2 s)
		time.Sleep(1200 * time.Millisecond)
		require.NoError(t, c.Write(protocol.MsgLabels, []byte(`{"a":"b"}`)))
		_, err := c.Expect(protocol.MsgReady)
		require.NoError(t, err)
	}
	began := time.Now()
	_, err := c.ReadRaw() // we stall: the server gives up
	require.Error(t, err)
	assert.Less(t, time.Since(began), messageTimeout+2*time.Second)
	eventually(t, 5*time.Second, func() error {
		for _, e := range events(t, ns) {
			if e.Reason == "RegistrationFailed" && strings.Contains(e.Message, "timed out") {
				return nil
			}
		}
		return assert.AnError
	})
}
