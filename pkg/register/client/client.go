// Package client is our elemental-register host side: it dials the
// registration URL, authenticates, sends the host's facts and returns the
// Config reply, exactly as the real client does (docs/contracts.md, elemental-register).
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
)

// Request is one registration attempt.
type Request struct {
	// URL is elemental.registration.url; CACert is added to the system pool.
	URL, CACert string
	// Authorization is the header value, e.g. "Bearer PLAIN52:54:00:…".
	Authorization string
	// Authenticate, set for TPM authorization, answers the server's
	// credential-activation challenge over ch before Ready is expected.
	// ch frames like upstream elemental-register (see Channel).
	Authenticate func(ch io.ReadWriter) error
	// Update is set for re-registrations (the state file has initialRegistration).
	Update bool
	// NoSMBIOS skips Smbios and SystemDataV2.
	NoSMBIOS    bool
	Smbios      map[string]interface{}
	SystemData  map[string]interface{}
	Annotations map[string]string
	Labels      map[string]string
	// Timeout is the one absolute deadline of the whole conversation (10 s upstream).
	Timeout time.Duration
	// NetDialContext, when set, dials the TCP connection (tests pick the
	// source address with it).
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// PlainAuth is the Authorization header for mac and sys-uuid.
func PlainAuth(id string) string { return "Bearer PLAIN" + id }

// Register runs one conversation and returns the raw Config payload.
func Register(ctx context.Context, req Request) ([]byte, error) {
	if req.Timeout == 0 {
		req.Timeout = 10 * time.Second
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if req.CACert != "" && !pool.AppendCertsFromPEM([]byte(req.CACert)) {
		return nil, errors.New("ca-cert holds no PEM certificate")
	}
	dialer := websocket.Dialer{
		HandshakeTimeout: 45 * time.Second,
		TLSClientConfig:  &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Proxy:            http.ProxyFromEnvironment,
		NetDialContext:   req.NetDialContext,
	}
	// Like upstream: the first "http" becomes "ws" (https → wss).
	url := strings.Replace(req.URL, "http", "ws", 1)
	ws, resp, err := dialer.DialContext(ctx, url, http.Header{"Authorization": {req.Authorization}})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			return nil, fmt.Errorf("registration refused: %s", body)
		}
		if resp != nil {
			return nil, fmt.Errorf("%w (Status: %s)", err, resp.Status)
		}
		return nil, err
	}
	deadline := time.Now().Add(req.Timeout)
	conn := protocol.NewConn(ws, req.Timeout, deadline)
	defer func() { _ = conn.Close() }()
	if req.Authenticate != nil {
		// Upstream sets one absolute deadline right after the dial.
		_ = ws.SetReadDeadline(deadline)
		_ = ws.SetWriteDeadline(deadline)
		if err := req.Authenticate(Channel{WS: ws}); err != nil {
			return nil, fmt.Errorf("TPM authentication failed: %w", err)
		}
		if _, err := conn.Expect(protocol.MsgReady); err != nil {
			return nil, fmt.Errorf("TPM authentication failed: expecting auth reply: %w", err)
		}
	} else if _, err := conn.Expect(protocol.MsgReady); err != nil {
		return nil, err
	}
	return converse(conn, req, ws.LocalAddr().String())
}

// Channel carries the two unframed TPM challenge messages exactly as upstream
// elemental-register does: every Read starts the next WebSocket message and
// reads from it once, every Write is one binary message. The challenge is
// decoded by a JSON decoder whose first read is 512 bytes, so a server
// challenge over 512 bytes fails here as it fails upstream.
type Channel struct{ WS *websocket.Conn }

func (c Channel) Read(p []byte) (int, error) {
	_, r, err := c.WS.NextReader()
	if err != nil {
		return 0, err
	}
	return r.Read(p)
}

func (c Channel) Write(p []byte) (int, error) {
	w, err := c.WS.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(p)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// converse runs the conversation after authentication (Ready received).
func converse(conn *protocol.Conn, req Request, localAddr string) ([]byte, error) {
	if err := conn.Write(protocol.MsgVersion, []byte{protocol.Version}); err != nil {
		return nil, err
	}
	payload, err := conn.Expect(protocol.MsgVersion)
	if err != nil {
		return nil, err
	}
	v, err := protocol.DecodeVersion(payload)
	if err != nil {
		return nil, err
	}
	send := func(t protocol.MessageType, body interface{}) error {
		var data []byte
		if body != nil {
			if data, err = protocol.EncodeJSON(body); err != nil {
				return err
			}
		}
		if err := conn.Write(t, data); err != nil {
			return err
		}
		_, err := conn.Expect(protocol.MsgReady)
		return err
	}
	if req.Update {
		if v < 10 {
			return nil, fmt.Errorf("server protocol %d does not support updates", v)
		}
		if err := send(protocol.MsgUpdate, nil); err != nil {
			var re *protocol.RemoteError
			if errors.As(err, &re) {
				return nil, fmt.Errorf("update error: %s", re.Message)
			}
			return nil, err
		}
	}
	if !req.NoSMBIOS {
		if err := send(protocol.MsgSmbios, nonNil(req.Smbios)); err != nil {
			return nil, err
		}
		if err := send(protocol.MsgSystemDataV2, nonNil(req.SystemData)); err != nil {
			return nil, err
		}
	}
	if v >= 9 {
		ann := map[string]string{}
		for k, val := range req.Annotations {
			ann[k] = val
		}
		// Everything before the last ":" of host:port (IPv6 keeps brackets).
		if i := strings.LastIndex(localAddr, ":"); i > 0 {
			ann["registration-ip"] = localAddr[:i]
		}
		if err := send(protocol.MsgAnnotations, ann); err != nil {
			return nil, err
		}
	}
	if len(req.Labels) > 0 {
		if err := send(protocol.MsgLabels, req.Labels); err != nil {
			return nil, err
		}
	}
	if err := conn.Write(protocol.MsgGet, nil); err != nil {
		return nil, err
	}
	return conn.Expect(protocol.MsgConfig)
}

func nonNil(m map[string]interface{}) map[string]interface{} {
	if m == nil {
		return map[string]interface{}{}
	}
	return m
}
