package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/runtime"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// Golden: 05 0C → 05 0C, 05 0D → 05 0C, type > 0C rejected.
func TestVersionFramesGolden(t *testing.T) {
	for _, tc := range []struct{ in, want []byte }{
		{[]byte{0x05, 0x0C}, []byte{0x05, 0x0C}},
		{[]byte{0x05, 0x0D}, []byte{0x05, 0x0C}},
		{[]byte{0x05, 0x08}, []byte{0x05, 0x08}},
	} {
		typ, payload, err := DecodeFrame(tc.in)
		require.NoError(t, err)
		require.Equal(t, MsgVersion, typ)
		v, err := DecodeVersion(payload)
		require.NoError(t, err)
		assert.Equal(t, tc.want, EncodeFrame(MsgVersion, []byte{Negotiate(v)}))
	}
	_, _, err := DecodeFrame([]byte{0x0D})
	assert.True(t, errors.Is(err, ErrUnknownMessage))
	_, _, err = DecodeFrame([]byte{0xFF, 1, 2})
	assert.True(t, errors.Is(err, ErrUnknownMessage))
	_, _, err = DecodeFrame(nil)
	assert.True(t, errors.Is(err, ErrEmptyMessage))
	_, err = DecodeVersion([]byte{0x0C, 0x00})
	assert.Error(t, err)
	_, err = DecodeVersion(nil)
	assert.Error(t, err)
}

func TestFrameBytes(t *testing.T) {
	assert.Equal(t, []byte{0x01}, EncodeFrame(MsgReady, nil))
	assert.Equal(t, []byte{0x04}, EncodeFrame(MsgGet, nil))
	assert.Equal(t, append([]byte{0x03}, []byte("{\"site\":\"lab-1\"}\n")...), EncodeFrame(MsgLabels, mustJSON(t, map[string]string{"site": "lab-1"})))
	assert.Equal(t, "Get", MsgGet.String())
	assert.Equal(t, "Unknown(13)", MessageType(13).String())
}

func mustJSON(t *testing.T, v interface{}) []byte {
	b, err := EncodeJSON(v)
	require.NoError(t, err)
	return b
}

func TestPayloadDecoders(t *testing.T) {
	m, err := DecodeStringMap([]byte("{\"a\":\"b\"}\n \t"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"a": "b"}, m)
	for _, bad := range []string{"", "null", "[]", `{"a":1}`, `{"a":"b"} x`, `{"a":"b"}{}`} {
		_, err := DecodeStringMap([]byte(bad))
		assert.Error(t, err, bad)
	}
	o, err := DecodeObject([]byte(`{"System Information":{"UUID":"x","Characteristics":["a","b"]},"n":1}` + "\n"))
	require.NoError(t, err)
	assert.Contains(t, o, "System Information")
	_, err = DecodeObject([]byte(`"x"`))
	assert.Error(t, err)
}

// Golden: Error payloads are YAML "message: <text>\n", one line.
func TestErrorPayloadGolden(t *testing.T) {
	assert.Equal(t, "message: MachineInventory not found\n", string(EncodeError("MachineInventory not found")))
	msg, err := DecodeError([]byte(`{"message":"json works"}`))
	require.NoError(t, err)
	assert.Equal(t, "json works", msg)
	msg, err = DecodeError(EncodeError("two\nlines: with colon"))
	require.NoError(t, err)
	assert.Equal(t, "two lines: with colon", msg)
}

// upstreamConfig is the real client's view of the reply: cloud-config as
// k8s RawExtensions decoded by yaml.v3.
type upstreamConfig struct {
	Elemental struct {
		Registration struct {
			URL    string `yaml:"url"`
			CACert string `yaml:"ca-cert"`
			Auth   string `yaml:"auth"`
		} `yaml:"registration"`
		SystemAgent struct {
			URL             string `yaml:"url"`
			Token           string `yaml:"token"`
			SecretName      string `yaml:"secret-name"`
			SecretNamespace string `yaml:"secret-namespace"`
			StrictTLSMode   bool   `yaml:"strictTLSMode"`
		} `yaml:"system-agent"`
		Reset struct {
			Enabled bool `yaml:"enabled"`
		} `yaml:"reset"`
	} `yaml:"elemental"`
	CloudConfig map[string]runtime.RawExtension `yaml:"cloud-config"`
}

// Golden (docs/contracts.md, elemental-register): the cloud-config encoding decodes into
// map[string]runtime.RawExtension with yaml.v3 and each Raw is valid JSON.
func TestCloudConfigEncodingGolden(t *testing.T) {
	cc, err := CloudConfig(map[string]runtime.RawExtension{
		"users":  {Raw: []byte(`[ {"name": "root", "passwd": "root"} ]`)},
		"runcmd": {Raw: []byte(`["echo hi"]`)},
	})
	require.NoError(t, err)
	out, err := EncodeConfig(Config{
		Elemental: Elemental{
			Reset:        elementalv1.Reset{Enabled: true, ResetOEM: true},
			Registration: Registration{URL: "https://r.example/elemental/registration/tok", CACert: "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n", Auth: "tpm"},
			SystemAgent:  SystemAgent{StrictTLSMode: true, URL: "https://r.example/k8s/clusters/local", Token: "eyJ", SecretName: "m1", SecretNamespace: "fleet-default"},
		},
		CloudConfig: cc,
	})
	require.NoError(t, err)
	s := string(out)
	// The upstream spelling (yaml.v3 of a RawExtension): raw is a sequence of
	// integers, one per byte, then object: null.
	assert.Contains(t, s, "    users:\n        raw:\n            - 91\n            - 123\n            - 34\n")
	assert.Contains(t, s, "        object: null\n")
	var generic map[string]map[string]map[string]interface{}
	require.NoError(t, yaml.Unmarshal(out, &generic))
	seq, ok := generic["cloud-config"]["users"]["raw"].([]interface{})
	require.True(t, ok)
	for _, b := range seq {
		assert.IsType(t, 0, b)
	}
	assert.Contains(t, s, "elemental:\n    reset:\n        enabled: true\n")
	assert.Contains(t, s, "    system-agent:\n        strictTLSMode: true\n        url: https://r.example/k8s/clusters/local\n")

	var up upstreamConfig
	require.NoError(t, yaml.Unmarshal(out, &up))
	require.Len(t, up.CloudConfig, 2)
	for k, v := range up.CloudConfig {
		assert.True(t, json.Valid(v.Raw), k)
	}
	assert.JSONEq(t, `[{"name":"root","passwd":"root"}]`, string(up.CloudConfig["users"].Raw))
	assert.Equal(t, "m1", up.Elemental.SystemAgent.SecretName)
	assert.True(t, up.Elemental.Reset.Enabled)
	assert.Equal(t, "https://r.example/elemental/registration/tok", up.Elemental.Registration.URL)

	// And our own decoder round-trips it into a host cloud-config file.
	var ours Config
	require.NoError(t, DecodeConfig(out, &ours))
	doc, err := CloudConfigDocument(ours.CloudConfig)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(doc), "#cloud-config\n"))
	assert.Contains(t, string(doc), "passwd: root")
}

func TestCloudConfigYipHasNoHeader(t *testing.T) {
	cc, err := CloudConfig(map[string]runtime.RawExtension{"stages": {Raw: []byte(`{"boot":[{"commands":["true"]}]}`)}})
	require.NoError(t, err)
	doc, err := CloudConfigDocument(cc)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(doc), "stages:"))
	_, err = CloudConfig(map[string]runtime.RawExtension{"x": {Raw: []byte(`{bad`)}})
	assert.Error(t, err)
}

// Golden: the plain-GET document has exactly the upstream shape.
func TestRegistrationDocumentGolden(t *testing.T) {
	out, err := EncodeRegistration(Registration{URL: "https://r/elemental/registration/t", CACert: "A\nB\n", EmulateTPM: true, EmulatedTPMSeed: -1, NoSMBIOS: true, Auth: "tpm"})
	require.NoError(t, err)
	assert.Equal(t, "elemental:\n    registration:\n        url: https://r/elemental/registration/t\n        ca-cert: |\n            A\n            B\n        emulate-tpm: true\n        emulated-tpm-seed: -1\n        no-smbios: true\n        auth: tpm\n", string(out))
	out, err = EncodeRegistration(Registration{URL: "u", Auth: "mac"})
	require.NoError(t, err)
	assert.Equal(t, "elemental:\n    registration:\n        url: u\n        auth: mac\n", string(out))
}
