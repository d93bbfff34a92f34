// Package host is the host side of registration: it reads the
// elemental-register config and state files, collects the host's identity and
// facts, authenticates (TPM through pkg/register/tpm, or PLAIN), runs the
// protocol through pkg/register/client, and writes what the reply asks for. Every path lives under a root directory, so tests (and
// image builders) run it unprivileged.
package host

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/elemental-operator/elemental-operator/pkg/register/client"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
	"github.com/elemental-operator/elemental-operator/pkg/register/tpm"
)

// Default paths (docs/contracts.md, elemental-register).
const (
	ConfigPath = "/oem/registration/config.yaml"
	StatePath  = "/oem/registration/state.yaml"

	ConnectionInfoPath = "/var/lib/elemental/agent/elemental_connection.json"
	AgentConfigPath    = "/etc/rancher/elemental/agent/config.yaml"
	AgentEnvsPath      = "/etc/rancher/elemental/agent/envs"
)

// Registration is the host's elemental.registration block; keys the server
// does not send (no-toolkit, labels) keep their local values.
type Registration struct {
	URL             string            `yaml:"url,omitempty"`
	CACert          string            `yaml:"ca-cert,omitempty"`
	EmulateTPM      bool              `yaml:"emulate-tpm,omitempty"`
	EmulatedTPMSeed int64             `yaml:"emulated-tpm-seed,omitempty"`
	NoSMBIOS        bool              `yaml:"no-smbios,omitempty"`
	Auth            string            `yaml:"auth,omitempty"`
	NoToolkit       bool              `yaml:"no-toolkit,omitempty"`
	Labels          map[string]string `yaml:"labels,omitempty"`
}

// Config is the config file: elemental.registration.
type Config struct {
	Elemental struct {
		Registration Registration `yaml:"registration"`
	} `yaml:"elemental"`
}

// State is the registration state file (kept across runs).
type State struct {
	InitialRegistration *time.Time `yaml:"initialRegistration,omitempty"`
	EmulatedTPM         bool       `yaml:"emulatedTPM,omitempty"`
	EmulatedTPMSeed     int64      `yaml:"emulatedTPMSeed,omitempty"`
}

// Options of one run.
type Options struct {
	Root       string // every path is under it ("/" on a host)
	ConfigPath string
	StatePath  string
	// Install with NoToolkit writes the agent files directly (unmanaged OS).
	Install   bool
	NoToolkit bool
}

func (o Options) path(p string) string { return filepath.Join(o.Root, p) }

// LoadConfig reads the config file.
func LoadConfig(path string) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if c.Elemental.Registration.URL == "" {
		return c, fmt.Errorf("%s: elemental.registration.url is empty", path)
	}
	return c, nil
}

func loadState(path string) (State, error) {
	var s State
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	return s, yaml.Unmarshal(data, &s)
}

// Facts are what the host tells about itself.
type Facts struct {
	Smbios     map[string]interface{}
	SystemData map[string]interface{}
	MAC        string
	UUID       string
	Hostname   string
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Collect reads SMBIOS (from sysfs), the first non-loopback MAC address and
// the hostname under root. SystemData leaves are strings, as the protocol wants.
func Collect(root string) Facts {
	dmi := func(name string) string { return readTrim(filepath.Join(root, "sys/class/dmi/id", name)) }
	f := Facts{UUID: dmi("product_uuid"), Hostname: readTrim(filepath.Join(root, "etc/hostname"))}
	if f.Hostname == "" {
		f.Hostname, _ = os.Hostname()
	}
	f.Smbios = map[string]interface{}{
		"System Information": map[string]interface{}{
			"Manufacturer": dmi("sys_vendor"), "Product Name": dmi("product_name"),
			"Serial Number": dmi("product_serial"), "UUID": f.UUID,
		},
		"Base Board Information": map[string]interface{}{"Manufacturer": dmi("board_vendor"), "Product Name": dmi("board_name")},
		"Chassis Information":    map[string]interface{}{"Manufacturer": dmi("chassis_vendor")},
	}
	ifaces, _ := os.ReadDir(filepath.Join(root, "sys/class/net"))
	var names []string
	for _, i := range ifaces {
		if i.Name() != "lo" {
			names = append(names, i.Name())
		}
	}
	sort.Strings(names)
	nics := map[string]interface{}{}
	for _, n := range names {
		mac := readTrim(filepath.Join(root, "sys/class/net", n, "address"))
		if mac == "" || mac == "00:00:00:00:00:00" {
			continue
		}
		if f.MAC == "" {
			f.MAC = mac
		}
		nics[n] = map[string]interface{}{"Name": n, "MacAddress": mac}
	}
	f.SystemData = map[string]interface{}{
		"CPU":     map[string]interface{}{"TotalCores": fmt.Sprint(runtime.NumCPU())},
		"Network": map[string]interface{}{"TotalNICs": fmt.Sprint(len(nics)), "NICs": nics},
		"Runtime": map[string]interface{}{"Hostname": f.Hostname},
	}
	return f
}

// auth is how this run authenticates.
type auth struct {
	header string
	// answer is set for TPM: it answers the credential-activation challenge.
	answer func(io.ReadWriter) error
	// annotation is the `auth` annotation: mac, sys-uuid, tpm or emulated-tpm.
	annotation string
}

// authenticator prepares the configured method. For TPM it attests the TPM
// (hardware, or emulated with the seed from EmulatedSeed, which it records in
// state so later runs keep the identity).
func authenticator(reg Registration, f Facts, state *State) (auth, error) {
	switch reg.Auth {
	case "mac":
		if f.MAC == "" {
			return auth{}, errors.New("auth mac: no network interface with a MAC address")
		}
		return auth{header: client.PlainAuth(f.MAC), annotation: "mac"}, nil
	case "sys-uuid":
		if !validUUID(f.UUID) {
			return auth{}, fmt.Errorf("auth sys-uuid: no usable SMBIOS system UUID (sys/class/dmi/id/product_uuid is %q)", f.UUID)
		}
		return auth{header: client.PlainAuth(f.UUID), annotation: "sys-uuid"}, nil
	case "", "tpm":
		dev := tpm.Device{Emulated: reg.EmulateTPM}
		a := auth{annotation: "tpm"}
		if reg.EmulateTPM {
			dev.Seed = EmulatedSeed(reg.EmulatedTPMSeed, *state, f.UUID)
			state.EmulatedTPM, state.EmulatedTPMSeed = true, dev.Seed
			a.annotation = "emulated-tpm"
		} else {
			state.EmulatedTPM, state.EmulatedTPMSeed = false, 0
		}
		att, err := dev.Attest()
		if err != nil {
			return auth{}, fmt.Errorf("auth tpm: %w", err)
		}
		a.header, a.answer = att.Header, att.Answer
		return a, nil
	}
	return auth{}, fmt.Errorf("unknown auth method %q", reg.Auth)
}

// validUUID refuses what firmware writes when it has no UUID
// ("Unspecified", "None", "Not Settable", "Not Present").
func validUUID(u string) bool {
	return u != "" && u != "Unspecified" && u != "None" && !strings.HasPrefix(u, "Not ")
}

// EmulatedSeed chooses the emulated TPM's seed (docs/contracts.md, elemental-register):
// a seed already in state wins; else a configured -1 derives one from the
// SMBIOS UUID (its hex digits as one integer, low 64 bits as int64; a random
// int63 without a usable UUID); else the configured seed.
func EmulatedSeed(configured int64, state State, uuid string) int64 {
	if state.EmulatedTPM {
		return state.EmulatedTPMSeed
	}
	if configured != -1 {
		return configured
	}
	var n big.Int
	if _, ok := n.SetString(strings.ReplaceAll(uuid, "-", ""), 16); !ok {
		return rand.Int64N(math.MaxInt64)
	}
	return int64(n.And(&n, new(big.Int).SetUint64(math.MaxUint64)).Uint64())
}

// Run registers (or re-registers) the host and writes what the mode asks for.
// It returns the decoded Config reply.
func Run(ctx context.Context, opts Options) (*protocol.Config, error) {
	if opts.ConfigPath == "" {
		opts.ConfigPath = ConfigPath
	}
	if opts.StatePath == "" {
		opts.StatePath = StatePath
	}
	cfg, err := LoadConfig(opts.path(opts.ConfigPath))
	if err != nil {
		return nil, err
	}
	reg := cfg.Elemental.Registration
	state, err := loadState(opts.path(opts.StatePath))
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	facts := Collect(opts.Root)
	a, err := authenticator(reg, facts, &state)
	if err != nil {
		return nil, err
	}
	req := client.Request{
		URL: reg.URL, CACert: reg.CACert, Authorization: a.header, Authenticate: a.answer,
		Update:      state.InitialRegistration != nil,
		NoSMBIOS:    reg.NoSMBIOS,
		Smbios:      facts.Smbios,
		SystemData:  facts.SystemData,
		Annotations: map[string]string{"auth": a.annotation},
		Labels:      reg.Labels,
	}
	if opts.NoToolkit || reg.NoToolkit {
		req.Annotations["os.unmanaged"] = "true"
	}
	payload, err := client.Register(ctx, req)
	if err != nil {
		return nil, err
	}
	var reply protocol.Config
	if err := protocol.DecodeConfig(payload, &reply); err != nil {
		return nil, err
	}
	if opts.Install && (opts.NoToolkit || reg.NoToolkit) {
		ca := reply.Elemental.Registration.CACert
		if ca == "" {
			ca = reg.CACert
		}
		files, err := AgentFiles(reply.Elemental.SystemAgent, ca)
		if err != nil {
			return nil, err
		}
		for p, content := range files {
			if err := writeFile(opts.path(p), content); err != nil {
				return nil, err
			}
		}
	}
	if state.InitialRegistration == nil {
		now := time.Now().UTC()
		state.InitialRegistration = &now
	}
	data, err := yaml.Marshal(state)
	if err != nil {
		return nil, err
	}
	if err := writeFile(opts.path(opts.StatePath), data); err != nil {
		return nil, err
	}
	return &reply, nil
}

// writeFile writes 0600 with 0700 parents: these files hold the agent's token.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// AgentFiles are the three files the unmanaged install writes (agent config, environment and connection file).
func AgentFiles(sa protocol.SystemAgent, caCert string) (map[string][]byte, error) {
	if sa.URL == "" || sa.Token == "" || sa.SecretName == "" || sa.SecretNamespace == "" {
		return nil, errors.New("the Config reply has no complete system-agent section")
	}
	kubeconfig := map[string]interface{}{
		"apiVersion": "v1", "kind": "Config",
		"clusters": []interface{}{map[string]interface{}{"name": "cluster", "cluster": map[string]interface{}{
			"server": sa.URL, "certificate-authority-data": base64.StdEncoding.EncodeToString([]byte(caCert)),
		}}},
		"users":           []interface{}{map[string]interface{}{"name": "user", "user": map[string]interface{}{"token": sa.Token}}},
		"contexts":        []interface{}{map[string]interface{}{"name": "context", "context": map[string]interface{}{"cluster": "cluster", "user": "user"}}},
		"current-context": "context",
	}
	kc, err := yaml.Marshal(kubeconfig)
	if err != nil {
		return nil, err
	}
	conn, err := json.Marshal(map[string]string{"kubeConfig": string(kc), "namespace": sa.SecretNamespace, "secretName": sa.SecretName})
	if err != nil {
		return nil, err
	}
	agentConfig := []byte("workDirectory: /var/lib/elemental/agent/work\n" +
		"localPlanDirectory: /var/lib/elemental/agent/plans\n" +
		"appliedPlanDirectory: /var/lib/elemental/agent/applied\n" +
		"remoteEnabled: true\n" +
		"connectionInfoFile: " + ConnectionInfoPath + "\n")
	return map[string][]byte{
		ConnectionInfoPath: conn,
		AgentConfigPath:    agentConfig,
		AgentEnvsPath:      []byte(fmt.Sprintf("CATTLE_AGENT_STRICT_VERIFY=%q\n", fmt.Sprint(sa.StrictTLSMode))),
	}, nil
}
