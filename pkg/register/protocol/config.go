package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/runtime"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// Registration is the registration block hosts receive: exactly the six keys
// the server echoes, in upstream's field order (docs/contracts.md, elemental-register).
type Registration struct {
	URL             string `yaml:"url,omitempty" json:"url,omitempty"`
	CACert          string `yaml:"ca-cert,omitempty" json:"ca-cert,omitempty"`
	EmulateTPM      bool   `yaml:"emulate-tpm,omitempty" json:"emulate-tpm,omitempty"`
	EmulatedTPMSeed int64  `yaml:"emulated-tpm-seed,omitempty" json:"emulated-tpm-seed,omitempty"`
	NoSMBIOS        bool   `yaml:"no-smbios,omitempty" json:"no-smbios,omitempty"`
	Auth            string `yaml:"auth,omitempty" json:"auth,omitempty"`
}

// SystemAgent tells the host's elemental-system-agent where its plan Secret is.
type SystemAgent struct {
	StrictTLSMode   bool   `yaml:"strictTLSMode,omitempty" json:"strictTLSMode,omitempty"`
	URL             string `yaml:"url,omitempty" json:"url,omitempty"`
	Token           string `yaml:"token,omitempty" json:"token,omitempty"`
	SecretName      string `yaml:"secret-name,omitempty" json:"secret-name,omitempty"`
	SecretNamespace string `yaml:"secret-namespace,omitempty" json:"secret-namespace,omitempty"`
}

// RawExtension is how yaml.v3 sees k8s' runtime.RawExtension: the real client
// decodes cloud-config only in this {raw: [bytes…], object: null} form.
type RawExtension struct {
	Raw    []byte      `yaml:"raw"`
	Object interface{} `yaml:"object"`
}

// Elemental is the elemental block of the Config reply.
type Elemental struct {
	Install      elementalv1.Install `yaml:"install,omitempty"`
	Reset        elementalv1.Reset   `yaml:"reset,omitempty"`
	Registration Registration        `yaml:"registration,omitempty"`
	SystemAgent  SystemAgent         `yaml:"system-agent,omitempty"`
}

// Config is the payload of the Config message (docs/contracts.md, elemental-register).
type Config struct {
	Elemental   Elemental               `yaml:"elemental"`
	CloudConfig map[string]RawExtension `yaml:"cloud-config,omitempty"`
}

// RegistrationDocument is the plain-GET answer (docs/contracts.md, elemental-register).
type RegistrationDocument struct {
	Elemental struct {
		Registration Registration `yaml:"registration"`
	} `yaml:"elemental"`
}

// EncodeRegistration renders the plain-GET YAML.
func EncodeRegistration(r Registration) ([]byte, error) {
	var doc RegistrationDocument
	doc.Elemental.Registration = r
	return yaml.Marshal(doc)
}

// CloudConfig converts a MachineRegistration's cloud-config into the wire
// form: each top-level value as the bytes of its compact JSON.
func CloudConfig(in map[string]runtime.RawExtension) (map[string]RawExtension, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]RawExtension, len(in))
	for k, v := range in {
		raw := v.Raw
		if raw == nil && v.Object != nil {
			var err error
			if raw, err = json.Marshal(v.Object); err != nil {
				return nil, fmt.Errorf("cloud-config %q: %w", k, err)
			}
		}
		if raw == nil {
			raw = []byte("null")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, fmt.Errorf("cloud-config %q: %w", k, err)
		}
		out[k] = RawExtension{Raw: buf.Bytes()}
	}
	return out, nil
}

// EncodeConfig renders the Config payload.
func EncodeConfig(c Config) ([]byte, error) { return yaml.Marshal(c) }

// DecodeConfig decodes a Config payload over dst, so keys the server did not
// send keep their current values (as the real client does).
func DecodeConfig(payload []byte, dst *Config) error {
	if err := yaml.Unmarshal(payload, dst); err != nil {
		return fmt.Errorf("invalid config payload: %w", err)
	}
	return nil
}

// CloudConfigDocument turns the wire cloud-config back into the host's file:
// yip when it has stages, otherwise #cloud-config.
func CloudConfigDocument(cc map[string]RawExtension) ([]byte, error) {
	if len(cc) == 0 {
		return nil, nil
	}
	doc := make(map[string]interface{}, len(cc))
	keys := make([]string, 0, len(cc))
	for k, v := range cc {
		var val interface{}
		if err := json.Unmarshal(v.Raw, &val); err != nil {
			return nil, fmt.Errorf("cloud-config %q: %w", k, err)
		}
		doc[k] = val
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if _, yip := doc["stages"]; yip {
		return out, nil
	}
	return append([]byte("#cloud-config\n"), out...), nil
}
