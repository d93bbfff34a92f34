package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Config is what a MachineRegistration hands to registering hosts.
type Config struct {
	// +optional
	Elemental Elemental `json:"elemental,omitempty" yaml:"elemental"`
	// +optional
	Network NetworkTemplate `json:"network,omitempty" yaml:"network,omitempty"`
	// CloudConfig is the host's cloud-init or yip configuration, stored as given.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	CloudConfig map[string]runtime.RawExtension `json:"cloud-config,omitempty" yaml:"cloud-config,omitempty"`
}

type Elemental struct {
	// +optional
	Install Install `json:"install,omitempty" yaml:"install,omitempty"`
	// +optional
	// +kubebuilder:default:={"reset-persistent":true,"reset-oem":true,"reboot":true}
	Reset Reset `json:"reset,omitempty" yaml:"reset,omitempty"`
	// +optional
	Registration Registration `json:"registration,omitempty" yaml:"registration,omitempty"`
	// SystemAgent is filled in by the registration server for each host; values in
	// a MachineRegistration spec are ignored.
	// +optional
	SystemAgent SystemAgent `json:"system-agent,omitempty" yaml:"system-agent,omitempty"`
}

// Install is passed verbatim to the host; the operator never interprets it.
type Install struct {
	// +optional
	Firmware string `json:"firmware,omitempty" yaml:"firmware,omitempty"`
	// +optional
	Device string `json:"device,omitempty" yaml:"device,omitempty"`
	// +optional
	DeviceSelector DeviceSelector `json:"device-selector,omitempty" yaml:"device-selector,omitempty"`
	// +optional
	NoFormat bool `json:"no-format,omitempty" yaml:"no-format,omitempty"`
	// +optional
	ConfigURLs []string `json:"config-urls,omitempty" yaml:"config-urls,omitempty"`
	// +optional
	ISO string `json:"iso,omitempty" yaml:"iso,omitempty"`
	// +optional
	SystemURI string `json:"system-uri,omitempty" yaml:"system-uri,omitempty"`
	// +optional
	Debug bool `json:"debug,omitempty" yaml:"debug,omitempty"`
	// +optional
	TTY string `json:"tty,omitempty" yaml:"tty,omitempty"`
	// +optional
	PowerOff bool `json:"poweroff,omitempty" yaml:"poweroff,omitempty"`
	// +optional
	Reboot bool `json:"reboot,omitempty" yaml:"reboot,omitempty"`
	// +optional
	EjectCD bool `json:"eject-cd,omitempty" yaml:"eject-cd,omitempty"`
	// +optional
	DisableBootEntry bool `json:"disable-boot-entry,omitempty" yaml:"disable-boot-entry,omitempty"`
	// +optional
	ConfigDir string `json:"config-dir,omitempty" yaml:"config-dir,omitempty"`
	// +optional
	// +kubebuilder:default:={"type":"loopdevice","maxSnaps":2}
	Snapshotter SnapshotterConfig `json:"snapshotter,omitempty" yaml:"snapshotter,omitempty"`
}

type SnapshotterConfig struct {
	// Type of snapshotter for a new installation: loopdevice or btrfs.
	// +optional
	// +kubebuilder:default:=loopdevice
	Type string `json:"type,omitempty" yaml:"type,omitempty"`
	// MaxSnaps is how many snapshots the host keeps.
	// +optional
	// +kubebuilder:default:=2
	// +kubebuilder:validation:Minimum=2
	MaxSnaps int `json:"maxSnaps,omitempty" yaml:"maxSnaps,omitempty"`
}

// Reset is passed verbatim to the host; Enabled also makes new inventories resettable.
type Reset struct {
	// Enabled is always emitted (no omitempty), as upstream does.
	// +optional
	Enabled bool `json:"enabled" yaml:"enabled"`
	// +optional
	// +kubebuilder:default:=true
	ResetPersistent bool `json:"reset-persistent,omitempty" yaml:"reset-persistent,omitempty"`
	// +optional
	// +kubebuilder:default:=true
	ResetOEM bool `json:"reset-oem,omitempty" yaml:"reset-oem,omitempty"`
	// +optional
	ConfigURLs []string `json:"config-urls,omitempty" yaml:"config-urls,omitempty"`
	// +optional
	SystemURI string `json:"system-uri,omitempty" yaml:"system-uri,omitempty"`
	// +optional
	Debug bool `json:"debug,omitempty" yaml:"debug,omitempty"`
	// +optional
	PowerOff bool `json:"poweroff,omitempty" yaml:"poweroff,omitempty"`
	// +optional
	// +kubebuilder:default:=true
	Reboot bool `json:"reboot,omitempty" yaml:"reboot,omitempty"`
	// +optional
	DisableBootEntry bool `json:"disable-boot-entry,omitempty" yaml:"disable-boot-entry,omitempty"`
}

// Registration is the host-side registration config. The server echoes only the
// first six fields to hosts; URL and CACert are replaced by the operator's own.
type Registration struct {
	// URL is ignored on input: hosts always receive status.registrationURL.
	// +optional
	URL string `json:"url,omitempty" yaml:"url,omitempty"`
	// CACert is ignored on input: hosts receive the operator's CA bundle.
	// +optional
	CACert string `json:"ca-cert,omitempty" yaml:"ca-cert,omitempty"`
	// +optional
	EmulateTPM bool `json:"emulate-tpm,omitempty" yaml:"emulate-tpm,omitempty"`
	// EmulatedTPMSeed seeds the software TPM; -1 means random or UUID-derived.
	// +optional
	EmulatedTPMSeed int64 `json:"emulated-tpm-seed,omitempty" yaml:"emulated-tpm-seed,omitempty"`
	// +optional
	NoSMBIOS bool `json:"no-smbios,omitempty" yaml:"no-smbios,omitempty"`
	// Auth is tpm, mac or sys-uuid. No enum, as upstream: the controller reports
	// other values with Ready=False/InvalidConfiguration.
	// +optional
	// +kubebuilder:default:=tpm
	Auth string `json:"auth,omitempty" yaml:"auth,omitempty"`
	// NoToolkit is client side only (unmanaged OS); never echoed.
	// +optional
	NoToolkit bool `json:"no-toolkit,omitempty" yaml:"no-toolkit,omitempty"`
	// Labels are client side only; never echoed.
	// +optional
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// SystemAgent tells the host's elemental-system-agent where its plan Secret is.
type SystemAgent struct {
	// +optional
	URL string `json:"url,omitempty" yaml:"url,omitempty"`
	// +optional
	Token string `json:"token,omitempty" yaml:"token,omitempty"`
	// +optional
	SecretName string `json:"secret-name,omitempty" yaml:"secret-name,omitempty"`
	// +optional
	SecretNamespace string `json:"secret-namespace,omitempty" yaml:"secret-namespace,omitempty"`
	// +optional
	StrictTLSMode bool `json:"strictTLSMode,omitempty" yaml:"strictTLSMode,omitempty"`
}

type DeviceSelector []DeviceSelectorRequirement

type DeviceSelectorRequirement struct {
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:Enum=Name;Size
	Key DeviceSelectorKey `json:"key" yaml:"key"`
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:Enum=In;NotIn;Gt;Lt
	Operator DeviceSelectorOperator `json:"operator" yaml:"operator"`
	// +optional
	Values []string `json:"values,omitempty" yaml:"values,omitempty"`
}

type DeviceSelectorKey string
type DeviceSelectorOperator string

// NetworkConfigurator names the host-side network configuration tool.
// +kubebuilder:validation:Enum=none;nmc;nmstate;nmconnections
type NetworkConfigurator string

const NetworkConfiguratorNone NetworkConfigurator = "none"

// NetworkTemplate is the MachineRegistration side of CAPI IPAM integration.
// Accepted and preserved; not acted upon in this release.
type NetworkTemplate struct {
	// +optional
	// +kubebuilder:default:=none
	Configurator NetworkConfigurator `json:"configurator,omitempty" yaml:"configurator,omitempty"`
	// +optional
	// +mapType=atomic
	IPAddresses map[string]*corev1.TypedLocalObjectReference `json:"ipAddresses,omitempty" yaml:"ipAddresses,omitempty"`
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Config map[string]runtime.RawExtension `json:"config,omitempty" yaml:"config,omitempty"`
}

// NetworkConfig is the MachineInventory side of IPAM: the claimed addresses.
type NetworkConfig struct {
	// +optional
	// +kubebuilder:default:=none
	Configurator NetworkConfigurator `json:"configurator,omitempty" yaml:"configurator,omitempty"`
	// +optional
	IPAddresses map[string]string `json:"ipAddresses,omitempty" yaml:"ipAddresses,omitempty"`
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Config map[string]runtime.RawExtension `json:"config,omitempty" yaml:"config,omitempty"`
}
