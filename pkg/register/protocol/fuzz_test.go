package protocol

import (
	"bytes"
	"testing"
)

func FuzzFrame(f *testing.F) {
	for _, seed := range [][]byte{{}, {0x05, 0x0C}, {0x0D}, {0x01}, {0x03, '{', '}'}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, payload, err := DecodeFrame(b)
		if err != nil {
			if len(b) > 0 && b[0] <= Version {
				t.Fatalf("known type %d rejected: %v", b[0], err)
			}
			return
		}
		if !bytes.Equal(EncodeFrame(typ, payload), b) {
			t.Fatalf("frame does not round-trip: %x", b)
		}
		if typ == MsgVersion {
			if v, err := DecodeVersion(payload); err == nil && Negotiate(v) > Version {
				t.Fatalf("negotiated above our version")
			}
		}
	})
}

func FuzzPayload(f *testing.F) {
	for _, seed := range []string{"{}\n", `{"a":"b"}`, `{"a":{"b":["c"]}}`, "null", `{"a":1} x`, "message: x\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := DecodeStringMap(b); err == nil && m == nil {
			t.Fatal("nil map without error")
		}
		if o, err := DecodeObject(b); err == nil && o == nil {
			t.Fatal("nil object without error")
		}
		_, _ = DecodeError(b)
		var c Config
		_ = DecodeConfig(b, &c)
		if msg, err := DecodeError(EncodeError(string(b))); err != nil || bytes.ContainsAny([]byte(msg), "\r\n") {
			t.Fatalf("error payload does not round-trip as one line: %q %v", msg, err)
		}
	})
}
