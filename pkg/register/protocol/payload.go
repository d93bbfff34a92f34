package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// DecodeVersion reads a Version payload: exactly one byte.
func DecodeVersion(payload []byte) (byte, error) {
	if len(payload) != 1 {
		return 0, fmt.Errorf("version payload must be 1 byte, got %d", len(payload))
	}
	return payload[0], nil
}

// Negotiate is the version the server answers a client's Version with.
func Negotiate(client byte) byte { return min(client, Version) }

// DecodeObject decodes a JSON object payload (Smbios, SystemDataV2,
// SystemData). The real client's encoder ends it with "\n"; any trailing
// whitespace is accepted, anything else after the object is not.
func DecodeObject(payload []byte) (map[string]interface{}, error) {
	var out map[string]interface{}
	if err := decodeStrict(payload, &out); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errors.New("payload is not a JSON object")
	}
	return out, nil
}

// DecodeStringMap decodes a JSON map[string]string payload (Labels, Annotations).
func DecodeStringMap(payload []byte) (map[string]string, error) {
	var out map[string]string
	if err := decodeStrict(payload, &out); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errors.New("payload is not a JSON object")
	}
	return out, nil
}

func decodeStrict(payload []byte, v interface{}) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON payload: %w", err)
	}
	if rest := bytes.TrimSpace(payload[dec.InputOffset():]); len(rest) > 0 {
		return errors.New("invalid JSON payload: trailing data")
	}
	return nil
}

// EncodeJSON is how our client writes JSON payloads: like the real client's
// encoder, with a trailing newline.
func EncodeJSON(v interface{}) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type errorPayload struct {
	Message string `yaml:"message" json:"message"`
}

// MaxErrorMessage caps Error texts; they are single lines meant for logs.
const MaxErrorMessage = 1024

// EncodeError is the YAML payload of an Error message. Newlines are flattened
// so the text stays on one line.
func EncodeError(msg string) []byte {
	msg = strings.NewReplacer("\r", " ", "\n", " ").Replace(msg)
	if len(msg) > MaxErrorMessage {
		msg = msg[:MaxErrorMessage]
	}
	out, _ := yaml.Marshal(errorPayload{Message: msg})
	return out
}

// DecodeError reads an Error payload (YAML, or JSON which is also YAML).
func DecodeError(payload []byte) (string, error) {
	var e errorPayload
	if err := yaml.Unmarshal(payload, &e); err != nil {
		return "", fmt.Errorf("invalid error payload: %w", err)
	}
	return e.Message, nil
}
