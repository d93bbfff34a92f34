package protocol

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gorilla/websocket"
)

// ErrTextMessage is a text frame where only binary ones are allowed.
var ErrTextMessage = errors.New("text messages are not part of the protocol")

// Conn frames messages over a WebSocket with a deadline per message: a
// stalled peer fails the current read, not the whole conversation's budget.
// An optional absolute deadline caps the whole conversation.
type Conn struct {
	ws       *websocket.Conn
	timeout  time.Duration
	deadline time.Time
}

// NewConn wraps ws. timeout applies to every read and write; deadline, when
// not zero, is never extended.
func NewConn(ws *websocket.Conn, timeout time.Duration, deadline time.Time) *Conn {
	ws.SetReadLimit(MaxMessageSize)
	return &Conn{ws: ws, timeout: timeout, deadline: deadline}
}

func (c *Conn) next() time.Time {
	d := time.Now().Add(c.timeout)
	if !c.deadline.IsZero() && c.deadline.Before(d) {
		return c.deadline
	}
	return d
}

// ReadRaw reads one binary message as is (the TPM challenge answer has no type byte).
func (c *Conn) ReadRaw() ([]byte, error) {
	if err := c.ws.SetReadDeadline(c.next()); err != nil {
		return nil, err
	}
	kind, data, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	if kind != websocket.BinaryMessage {
		return nil, ErrTextMessage
	}
	return data, nil
}

// ErrOverLimit is a message longer than the limit given to ReadLimited.
// Unlike a message over MaxMessageSize, nothing was sent to the peer: the
// caller can still answer with an Error before closing.
var ErrOverLimit = errors.New("message over the limit")

// ReadLimited reads one framed message of at most limit bytes (frame type
// included); a longer one is left unread and fails with ErrOverLimit.
// MaxMessageSize stays the hard cap.
func (c *Conn) ReadLimited(limit int64) (MessageType, []byte, error) {
	if err := c.ws.SetReadDeadline(c.next()); err != nil {
		return MsgUndefined, nil, err
	}
	kind, r, err := c.ws.NextReader()
	if err != nil {
		return MsgUndefined, nil, err
	}
	if kind != websocket.BinaryMessage {
		return MsgUndefined, nil, ErrTextMessage
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return MsgUndefined, nil, err
	}
	if int64(len(data)) > limit {
		// Skip the rest (no memory; MaxMessageSize and the deadline bound
		// it) so the peer, still writing, can read the answer.
		_, _ = io.Copy(io.Discard, r)
		return MsgUndefined, nil, ErrOverLimit
	}
	return DecodeFrame(data)
}

// Grace moves the conversation's deadline to d from now, for the last
// writes after it passed (a write cut by a deadline corrupts a TLS stream).
func (c *Conn) Grace(d time.Duration) { c.deadline = time.Now().Add(d) }

// Deadline is the absolute deadline of the whole conversation (zero: none).
func (c *Conn) Deadline() time.Time { return c.deadline }

// Read reads one framed message.
func (c *Conn) Read() (MessageType, []byte, error) {
	data, err := c.ReadRaw()
	if err != nil {
		return MsgUndefined, nil, err
	}
	return DecodeFrame(data)
}

// Expect reads one message and fails unless it has type want.
func (c *Conn) Expect(want MessageType) ([]byte, error) {
	typ, payload, err := c.Read()
	if err != nil {
		return nil, err
	}
	if typ == MsgError && want != MsgError {
		msg, _ := DecodeError(payload)
		return nil, &RemoteError{Message: msg}
	}
	if typ != want {
		return nil, fmt.Errorf("expecting '%s' but got '%s'", want, typ)
	}
	return payload, nil
}

// RemoteError is an Error message received from the peer.
type RemoteError struct{ Message string }

func (e *RemoteError) Error() string { return e.Message }

// WriteRaw writes one binary message, unframed, in a single frame.
func (c *Conn) WriteRaw(b []byte) error {
	if err := c.ws.SetWriteDeadline(c.next()); err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

// Write writes one framed message.
func (c *Conn) Write(t MessageType, payload []byte) error {
	return c.WriteRaw(EncodeFrame(t, payload))
}

// MaxCloseReason is the longest reason a Close frame can carry.
const MaxCloseReason = 123

// CloseWith sends a Close frame (reason truncated to fit) and closes the connection.
func (c *Conn) CloseWith(code int, reason string) {
	if len(reason) > MaxCloseReason {
		reason = reason[:MaxCloseReason]
	}
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = c.ws.Close()
}

// Close drops the connection without a Close frame (what the real client does).
func (c *Conn) Close() error { return c.ws.Close() }
