// Package protocol is the elemental-register wire protocol (protocol version
// 12), shared by the registration server and our client: message types, the
// one-byte framing, payload codecs and the YAML documents exchanged
// (docs/contracts.md, elemental-register).
package protocol

import (
	"errors"
	"fmt"
)

// MessageType is the first byte of every framed message.
type MessageType byte

// Message types. The numbering is the wire contract: never reorder.
const (
	MsgUndefined MessageType = iota
	MsgReady
	MsgSmbios
	MsgLabels
	MsgGet
	MsgVersion
	MsgSystemData
	MsgConfig
	MsgError
	MsgAnnotations
	MsgUpdate
	MsgSystemDataV2
	// MsgNetworkConfig is never sent: it exists only as protocol version 12.
	MsgNetworkConfig
)

// Version is the protocol version we speak: the highest message type we know.
const Version = byte(MsgNetworkConfig)

// MaxMessageSize bounds one message (ours; the real client has no limit).
const MaxMessageSize = 4 << 20

var names = [...]string{"Undefined", "Ready", "Smbios", "Labels", "Get", "Version", "SystemData",
	"Config", "Error", "Annotations", "Update", "SystemDataV2", "NetworkConfig"}

func (t MessageType) String() string {
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("Unknown(%d)", byte(t))
}

var (
	// ErrEmptyMessage is a message without even a type byte.
	ErrEmptyMessage = errors.New("empty message")
	// ErrUnknownMessage is a type byte above our protocol version.
	ErrUnknownMessage = errors.New("unknown message")
)

// DecodeFrame splits a framed message into its type and payload. The payload
// aliases b.
func DecodeFrame(b []byte) (MessageType, []byte, error) {
	if len(b) == 0 {
		return MsgUndefined, nil, ErrEmptyMessage
	}
	if b[0] > Version {
		return MsgUndefined, nil, fmt.Errorf("%w (type %d)", ErrUnknownMessage, b[0])
	}
	return MessageType(b[0]), b[1:], nil
}

// EncodeFrame prefixes payload with its type byte.
func EncodeFrame(t MessageType, payload []byte) []byte {
	out := make([]byte, 0, len(payload)+1)
	out = append(out, byte(t))
	return append(out, payload...)
}
