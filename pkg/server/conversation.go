package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/gorilla/websocket"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
	"github.com/elemental-operator/elemental-operator/pkg/templates"
)

// legacyVersion is assumed when the client does not send Version first.
const legacyVersion = 4

// frameConn is what a conversation speaks through (*protocol.Conn over the
// upgraded WebSocket; FuzzConversation drives it with in-memory frames).
type frameConn interface {
	ReadLimited(limit int64) (protocol.MessageType, []byte, error)
	ReadRaw() ([]byte, error)
	Write(t protocol.MessageType, payload []byte) error
	WriteRaw(b []byte) error
	CloseWith(code int, reason string)
	Close() error
	Deadline() time.Time
	Grace(d time.Duration)
}

// store is what a conversation needs from the API server (the Server; an
// in-memory one in FuzzConversation).
type store interface {
	existing(namespace string, id identity) (*elementalv1.MachineInventory, error)
	commit(c *conversation) (*protocol.Config, error)
}

// conversation is one upgraded connection, from authentication to Config.
type conversation struct {
	// ctx is the request's: every API call of the conversation derives from it.
	ctx     context.Context
	s       *Server
	store   store
	conn    frameConn
	mr      *elementalv1.MachineRegistration
	id      identity
	remote  string
	version byte

	update      bool
	data        map[string]interface{}
	labels      map[string]string
	annotations map[string]string
}

// replyError is a failure the host is told about (as Error or a Close frame).
type replyError struct{ msg string }

func (e *replyError) Error() string { return e.msg }

func (c *conversation) run() {
	defer func() { _ = c.conn.Close() }()
	c.data = map[string]interface{}{}
	if c.id.tpm {
		if !c.activate() {
			return
		}
	}
	if err := c.conn.Write(protocol.MsgReady, nil); err != nil {
		c.s.failed(c.mr, c.remote, "writing Ready: "+err.Error())
		return
	}
	first := true
	lim := c.s.limits.Load()
	budget, messages := lim.conversationBytes, 0
	for {
		// The byte budget caps the next message too, so a host never gets
		// more than the budget read, let alone decoded.
		limit := min(budget, protocol.MaxMessageSize)
		typ, payload, err := c.conn.ReadLimited(limit)
		if err != nil {
			if errors.Is(err, protocol.ErrUnknownMessage) || errors.Is(err, protocol.ErrEmptyMessage) || errors.Is(err, protocol.ErrTextMessage) {
				c.protocolError(err.Error())
				return
			}
			var ne net.Error
			switch {
			case errors.Is(err, protocol.ErrOverLimit):
				c.overLimit(refusedBytes, fmt.Sprintf("registration data over the limit of %d bytes per registration", lim.conversationBytes))
			case errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(c.conn.Deadline()):
				c.conn.Grace(time.Second)
				c.overLimit(refusedDeadline, fmt.Sprintf("registration not finished within %s", lim.conversationTimeout))
			case errors.As(err, &ne) && ne.Timeout():
				c.s.failed(c.mr, c.remote, "timed out waiting for the client")
			case errors.Is(err, websocket.ErrReadLimit):
				refused(refusedMessageLarge)
				c.protocolError("message too large")
			default:
				c.s.failed(c.mr, c.remote, "connection lost: "+err.Error())
			}
			return
		}
		budget -= int64(len(payload)) + 1
		if messages++; messages > lim.conversationMessages {
			c.overLimit(refusedMessages, fmt.Sprintf("more than %d messages in one registration", lim.conversationMessages))
			return
		}
		if typ == protocol.MsgVersion {
			if !first {
				c.protocolError("Version must be the first message")
				return
			}
			first = false
			if !c.negotiate(payload) {
				return
			}
			continue
		}
		first = false
		done, err := c.handle(typ, payload)
		if err != nil {
			var re *replyError
			var bound *refusalError
			if errors.As(err, &bound) {
				c.refuse(bound)
			} else if errors.As(err, &re) {
				c.fail(re.msg)
			} else {
				c.protocolError(err.Error())
			}
			return
		}
		if done {
			return
		}
	}
}

// activate runs the TPM credential activation: the host proves it holds
// the EK by decrypting a challenge (see docs/contracts.md, elemental-register).
func (c *conversation) activate() bool {
	if err := c.conn.WriteRaw(c.id.challenge); err != nil {
		c.s.failed(c.mr, c.remote, "writing TPM challenge: "+err.Error())
		return false
	}
	answer, err := c.conn.ReadRaw()
	if err != nil || !verifyAnswer(c.id, answer) {
		c.s.failed(c.mr, c.remote, "TPM credential activation failed")
		c.conn.CloseWith(websocket.ClosePolicyViolation, "TPM credential activation failed")
		return false
	}
	return true
}

func (c *conversation) negotiate(payload []byte) bool {
	v, err := protocol.DecodeVersion(payload)
	if err != nil {
		c.protocolError(err.Error())
		return false
	}
	if v <= legacyVersion {
		c.s.failed(c.mr, c.remote, fmt.Sprintf("client protocol version %d is deprecated", v))
		c.conn.CloseWith(websocket.CloseProtocolError, "elemental-register protocol version is deprecated")
		return false
	}
	c.version = protocol.Negotiate(v)
	if err := c.conn.Write(protocol.MsgVersion, []byte{c.version}); err != nil {
		c.s.failed(c.mr, c.remote, "writing Version: "+err.Error())
		return false
	}
	return true
}

// handle processes one data message; done is true once Get was answered.
func (c *conversation) handle(typ protocol.MessageType, payload []byte) (done bool, err error) {
	switch typ {
	case protocol.MsgSmbios, protocol.MsgSystemDataV2:
		obj, err := protocol.DecodeObject(payload)
		if err != nil {
			return false, err
		}
		templates.Merge(c.data, obj)
	case protocol.MsgSystemData:
		// Legacy hostinfo: validated, not converted (System Data/… stays
		// not-found for such old clients, which the spec allows).
		if _, err := protocol.DecodeObject(payload); err != nil {
			return false, err
		}
	case protocol.MsgLabels:
		if e := c.s.limits.Load().meta.sent("labels", payload, len(c.labels)); e != nil {
			return false, e
		}
		m, err := protocol.DecodeStringMap(payload)
		if err != nil {
			return false, err
		}
		c.labels = mergeStrings(c.labels, m)
	case protocol.MsgAnnotations:
		if e := c.s.limits.Load().meta.sent("annotations", payload, len(c.annotations)); e != nil {
			return false, e
		}
		m, err := protocol.DecodeStringMap(payload)
		if err != nil {
			return false, err
		}
		c.annotations = mergeStrings(c.annotations, m)
	case protocol.MsgUpdate:
		if c.update {
			return false, errors.New("update sent twice")
		}
		c.update = true
		mi, err := c.store.existing(c.mr.Namespace, c.id)
		if err != nil {
			return false, &replyError{err.Error()}
		}
		if mi == nil {
			return false, &replyError{"MachineInventory not found"}
		}
	case protocol.MsgGet:
		return true, c.get()
	default:
		return false, fmt.Errorf("unexpected message '%s'", typ)
	}
	return false, c.conn.Write(protocol.MsgReady, nil)
}

func mergeStrings(dst, src map[string]string) map[string]string {
	if dst == nil {
		dst = map[string]string{}
	}
	for k, v := range src {
		dst[k] = v
	}
	return dst
}

// get commits the inventory and answers Config: the host's Get ends the
// conversation (see docs/contracts.md, elemental-register).
func (c *conversation) get() error {
	cfg, err := c.store.commit(c)
	if err != nil {
		return err
	}
	payload, err := protocol.EncodeConfig(*cfg)
	if err != nil {
		return &replyError{"encoding the config failed"}
	}
	if c.version >= 7 {
		err = c.conn.Write(protocol.MsgConfig, payload)
	} else {
		err = c.conn.WriteRaw(payload)
	}
	if err != nil {
		c.s.failed(c.mr, c.remote, "writing Config: "+err.Error())
	}
	return nil
}

// overLimit ends a conversation that exceeded a budget or its deadline:
// counted, then Error (v ≥ 8) and Close 1008 with the reason. Nothing was
// written to the API: the inventory is only created on Get.
func (c *conversation) overLimit(reason, msg string) {
	refused(reason)
	c.protocolError(msg)
}

// refuse ends a registration refused by a bound (metadata caps,
// spec.limits) the way fail does, with the refusal's own metric and Event.
func (c *conversation) refuse(e *refusalError) {
	c.s.refusedRegistration(c.mr, c.remote, e)
	c.reply(e.msg)
}

// protocolError: Error + Close 1008 for v ≥ 8, else Close 1008 with the reason.
func (c *conversation) protocolError(msg string) {
	c.s.failed(c.mr, c.remote, "protocol error: "+msg)
	if c.version >= 8 {
		_ = c.conn.Write(protocol.MsgError, protocol.EncodeError(msg))
	}
	c.conn.CloseWith(websocket.ClosePolicyViolation, msg)
}

// fail reports a failure the host can act on: Error for v ≥ 8, else Close 1011.
func (c *conversation) fail(msg string) {
	c.s.failed(c.mr, c.remote, msg)
	c.reply(msg)
}

// reply tells the host why it failed: Error for v ≥ 8, else Close 1011.
func (c *conversation) reply(msg string) {
	if c.version >= 8 {
		_ = c.conn.Write(protocol.MsgError, protocol.EncodeError(msg))
		c.conn.CloseWith(websocket.CloseNormalClosure, "")
		return
	}
	c.conn.CloseWith(websocket.CloseInternalServerErr, msg)
}
