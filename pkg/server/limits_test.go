package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
	"github.com/elemental-operator/elemental-operator/pkg/server"
)

// Every 127.0.0.0/8 address is on lo: attackers and the well-behaved host
// register from different source addresses.
const goodSource = "127.0.0.2"

func dialerFrom(source string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	return d.DialContext
}

// registerFrom registers a well-behaved host with the real client.
func registerFrom(mr *elementalv1.MachineRegistration, mac, source string) error {
	_, err := client.Register(context.Background(), client.Request{
		URL: mr.Status.RegistrationURL, CACert: hostCA, Authorization: client.PlainAuth(mac),
		Smbios:         map[string]interface{}{"System Information": map[string]interface{}{"UUID": "uuid-" + mac}},
		SystemData:     map[string]interface{}{"CPU": map[string]interface{}{"TotalCores": "2"}},
		NetDialContext: dialerFrom(source),
	})
	return err
}

// wsFrom opens a WebSocket from source: the conversation, or the refusal.
func wsFrom(t *testing.T, u, auth, source string) (*websocket.Conn, *http.Response) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(hostCA))
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, HandshakeTimeout: 5 * time.Second, NetDialContext: dialerFrom(source)}
	ws, resp, err := d.Dial(strings.Replace(u, "http", "ws", 1), http.Header{"Authorization": {auth}})
	if err != nil {
		require.NotNil(t, resp, err)
		return nil, resp
	}
	return ws, resp
}

// tlsFrom opens a raw TLS connection to the direct listener from source.
func tlsFrom(t *testing.T, source string) *tls.Conn {
	t.Helper()
	u, err := url.Parse(directURL)
	require.NoError(t, err)
	raw, err := dialerFrom(source)(context.Background(), "tcp", u.Host)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(srv.CACert()))
	c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: u.Hostname()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func refusals(reason string) float64 {
	var m dto.Metric
	if err := metrics.RegistrationRefusals.WithLabelValues(reason).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// quiet waits until no connection is open (the tests' earlier keep-alive
// connections close after idleTimeout), so a test's limits count only its own.
func quiet(t *testing.T) {
	t.Helper()
	eventually(t, 3*idleTimeout, func() error {
		if n := srv.OpenConnections(); n != 0 {
			return fmt.Errorf("%d connections still open", n)
		}
		return nil
	})
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// Idle keep-alive connections are closed after IdleTimeout and their
// goroutines end, while a host registers.
func TestIdleConnectionsClosed(t *testing.T) {
	if rancher != nil {
		t.Skip("through Rancher the hosts' connections end at Rancher's proxy, whose idle timeout governs them")
	}
	mr := newRegistration(t, newNamespace(t), "idle", macRegistration())
	quiet(t)
	before := runtime.NumGoroutine()
	const n = 200
	readers := make([]*bufio.Reader, n)
	conns := make([]*tls.Conn, n)
	for i := range conns {
		conns[i] = tlsFrom(t, "127.0.0.1")
		_, err := conns[i].Write([]byte("GET /elemental/registration/nosuchtoken HTTP/1.1\r\nHost: x\r\n\r\n"))
		require.NoError(t, err)
		readers[i] = bufio.NewReader(conns[i])
		resp, err := http.ReadResponse(readers[i], nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	}
	held := time.Now()
	assert.GreaterOrEqual(t, runtime.NumGoroutine()-before, n, "one server goroutine per idle connection")
	assert.Equal(t, n, srv.OpenConnections())
	require.NoError(t, registerFrom(mr, "52:54:00:1d:1e:01", goodSource))

	for i, c := range conns {
		_ = c.SetReadDeadline(held.Add(idleTimeout + 3*time.Second))
		_, err := readers[i].ReadByte()
		require.ErrorIs(t, err, io.EOF, "connection %d: closed by the server", i)
	}
	assert.Less(t, time.Since(held), idleTimeout+3*time.Second)
	eventually(t, 5*time.Second, func() error {
		if g := runtime.NumGoroutine(); g > before+10 {
			return fmt.Errorf("%d goroutines, %d before", g, before)
		}
		if o := srv.OpenConnections(); o != 0 {
			return fmt.Errorf("%d connections open", o)
		}
		return nil
	})
}

// Half-sent request heads: each holds at most MaxHeaderBytes; beyond the
// per-source limit a source gets 429, beyond the connection limit anyone
// gets 503; a host from another source registers while only per-source
// limits are hit, and again once the attackers are gone.
func TestHalfSentHeaders(t *testing.T) {
	if rancher != nil {
		t.Skip("through Rancher the request head is read by Rancher's proxy; nothing half-sent reaches the tunnel")
	}
	mr := newRegistration(t, newNamespace(t), "slowloris", macRegistration())
	quiet(t)
	const maxConns, perSource, each = 25, 10, 12
	defer srv.SetLimits(server.Limits{MaxConnections: maxConns, MaxPerSource: perSource})()
	perSource0, conns0 := refusals("per_source"), refusals("connections")
	heap0 := heapInuse()

	head := "GET /elemental/registration/x HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 48<<10)
	// attack opens each connections from source and sends a head that
	// never ends; it returns the status of each refused one.
	var attackers []*tls.Conn
	attack := func(source string) map[int]int {
		codes := map[int]int{}
		var mine []*tls.Conn
		for i := 0; i < each; i++ {
			c := tlsFrom(t, source)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte(head)); err != nil {
				codes[0]++
				continue
			}
			mine = append(mine, c)
		}
		for _, c := range mine {
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				attackers = append(attackers, c) // still held by the server
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			codes[resp.StatusCode]++
			switch resp.StatusCode {
			case http.StatusTooManyRequests:
				assert.Equal(t, "too many registrations in progress from "+source+"; retry later", string(body))
				assert.Equal(t, "10", resp.Header.Get("Retry-After"))
			case http.StatusServiceUnavailable:
				assert.Equal(t, "registration server has too many open connections; retry later", string(body))
				assert.Equal(t, "5", resp.Header.Get("Retry-After"))
			}
		}
		return codes
	}
	assert.Equal(t, map[int]int{http.StatusTooManyRequests: each - perSource}, attack("127.0.0.10"))
	assert.Equal(t, map[int]int{http.StatusTooManyRequests: each - perSource}, attack("127.0.0.11"))
	require.NoError(t, registerFrom(mr, "52:54:00:51:0e:01", goodSource), "a host registers while two sources are held to their share")
	// A third source fills the connection limit: the rest get 503.
	assert.Equal(t, map[int]int{http.StatusServiceUnavailable: each - (maxConns - 2*perSource)}, attack("127.0.0.12"))
	assert.Len(t, attackers, maxConns)
	assert.Equal(t, maxConns, srv.OpenConnections())
	assert.Equal(t, float64(2*(each-perSource)), refusals("per_source")-perSource0)
	assert.Equal(t, float64(each-(maxConns-2*perSource)), refusals("connections")-conns0)

	// Memory: every held connection pinned at most its 64 KiB head and its
	// TLS and buffer state (server and attacker side both count here: they
	// share the process). With net/http's 1 MiB default the same heads could
	// pin 25 MiB.
	grown := int64(heapInuse()) - int64(heap0)
	const bound = maxConns*(server.MaxHeaderBytes+128<<10) + 4<<20
	t.Logf("heap in use grew by %d KiB with %d half-sent heads held (bound %d KiB)", grown>>10, maxConns, bound>>10)
	assert.Less(t, grown, int64(bound))

	// While the limit is full, anyone is refused, the good host too.
	err := registerFrom(mr, "52:54:00:51:0e:02", goodSource)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "503")

	// A complete head over MaxHeaderBytes is refused by net/http (431).
	for _, c := range attackers[:1] {
		_ = c.Close()
	}
	eventually(t, 5*time.Second, func() error {
		if srv.OpenConnections() >= maxConns {
			return fmt.Errorf("slot not released")
		}
		return nil
	})
	big := tlsFrom(t, goodSource)
	_ = big.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = big.Write([]byte(head + strings.Repeat("a", server.MaxHeaderBytes) + "\r\n\r\n"))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(big), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	_ = big.Close()

	for _, c := range attackers {
		_ = c.Close()
	}
	eventually(t, 10*time.Second, func() error { return registerFrom(mr, "52:54:00:51:0e:02", goodSource) })
}

// A conversation that outlasts the conversation deadline (message by
// message within the per-message timeout) gets the protocol's Error; a host
// registering at the same time succeeds; nothing is created.
func TestSlowConversation(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "slow", macRegistration())
	const deadline = 3 * time.Second
	defer srv.SetLimits(server.Limits{ConversationTimeout: deadline})()
	before := refusals("conversation_deadline")

	const attacker = "52:54:00:51:0c:01"
	ws, _ := wsFrom(t, mr.Status.RegistrationURL, client.PlainAuth(attacker), "127.0.0.1")
	c := start(t, ws)
	began := time.Now()
	good := make(chan error, 1)
	go func() { good <- registerFrom(mr, "52:54:00:51:0c:02", goodSource) }()
	var err error
	for err == nil && time.Since(began) < 3*deadline {
		time.Sleep(time.Second)
		if err = c.Write(protocol.MsgLabels, []byte(`{"a":"b"}`)); err == nil {
			_, err = c.Expect(protocol.MsgReady)
		}
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "registration not finished within 3s")
	assert.Less(t, time.Since(began), deadline+2*time.Second)
	require.NoError(t, <-good)
	assert.Nil(t, inventoryByHash(t, ns, hashOf(attacker)))
	assert.NotNil(t, inventoryByHash(t, ns, hashOf("52:54:00:51:0c:02")))
	assert.Equal(t, 1.0, refusals("conversation_deadline")-before)
}

// Too many messages, or too many bytes, in one conversation: the protocol's
// Error, nothing created; a host registering at the same time succeeds.
func TestMessageFlood(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "flood", macRegistration())
	const maxMessages, maxBytes = 8, 256 << 10
	defer srv.SetLimits(server.Limits{ConversationMessages: maxMessages, ConversationBytes: maxBytes})()
	msgs0, bytes0 := refusals("conversation_messages"), refusals("conversation_bytes")
	good := make(chan error, 1)
	go func() { good <- registerFrom(mr, "52:54:00:51:0f:00", goodSource) }()

	const flooder, stuffer = "52:54:00:51:0f:01", "52:54:00:51:0f:02"
	ws, _ := wsFrom(t, mr.Status.RegistrationURL, client.PlainAuth(flooder), "127.0.0.1")
	c := start(t, ws) // Version is the first message
	for i := 2; i <= maxMessages; i++ {
		require.NoError(t, c.Write(protocol.MsgLabels, []byte(fmt.Sprintf(`{"k%d":"v"}`, i))))
		_, err := c.Expect(protocol.MsgReady)
		require.NoError(t, err, "message %d", i)
	}
	require.NoError(t, c.Write(protocol.MsgLabels, []byte(`{"one":"more"}`)))
	_, err := c.Expect(protocol.MsgReady)
	require.Error(t, err)
	assert.Equal(t, fmt.Sprintf("more than %d messages in one registration", maxMessages), err.Error())

	ws, _ = wsFrom(t, mr.Status.RegistrationURL, client.PlainAuth(stuffer), "127.0.0.1")
	c = start(t, ws)
	chunk := []byte(`{"pad":"` + strings.Repeat("x", 100<<10) + `"}`)
	for i := 0; ; i++ {
		require.Less(t, i, 3, "the byte budget never ran out")
		require.NoError(t, c.Write(protocol.MsgSmbios, chunk))
		if _, err = c.Expect(protocol.MsgReady); err != nil {
			break
		}
	}
	assert.Equal(t, fmt.Sprintf("registration data over the limit of %d bytes per registration", maxBytes), err.Error())

	require.NoError(t, <-good)
	assert.Nil(t, inventoryByHash(t, ns, hashOf(flooder)))
	assert.Nil(t, inventoryByHash(t, ns, hashOf(stuffer)))
	assert.Equal(t, 1.0, refusals("conversation_messages")-msgs0)
	assert.Equal(t, 1.0, refusals("conversation_bytes")-bytes0)
}

// One source holding its share of conversations gets 429 for the next;
// a host from another source registers meanwhile. Through Rancher the
// source is the X-Forwarded-For address its proxy appends.
func TestPerSourceLimit(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "persource", macRegistration())
	quiet(t)
	const perSource = 3
	defer srv.SetLimits(server.Limits{MaxPerSource: perSource})()
	before := refusals("per_source")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < perSource; i++ {
		ws, resp := wsFrom(t, mr.Status.RegistrationURL, client.PlainAuth(fmt.Sprintf("52:54:00:51:05:%02x", i)), "127.0.0.1")
		require.NotNil(t, ws, "conversation %d: HTTP %d", i, resp.StatusCode)
		c := start(t, ws)
		wg.Add(1)
		go func() { // keep the conversation alive, within the message timeout
			defer wg.Done()
			defer func() { _ = c.Close() }()
			for {
				select {
				case <-stop:
					return
				case <-time.After(messageTimeout / 3):
				}
				if c.Write(protocol.MsgLabels, []byte(`{"a":"b"}`)) != nil {
					return
				}
				if _, err := c.Expect(protocol.MsgReady); err != nil {
					return
				}
			}
		}()
	}
	ws, resp := wsFrom(t, mr.Status.RegistrationURL, client.PlainAuth("52:54:00:51:05:ff"), "127.0.0.1")
	require.Nil(t, ws)
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "10", resp.Header.Get("Retry-After"))
	assert.Equal(t, "too many registrations in progress from 127.0.0.1; retry later", string(body))
	assert.Equal(t, 1.0, refusals("per_source")-before)

	require.NoError(t, registerFrom(mr, "52:54:00:51:05:fe", goodSource))
	assert.NotNil(t, inventoryByHash(t, ns, hashOf("52:54:00:51:05:fe")))
}
