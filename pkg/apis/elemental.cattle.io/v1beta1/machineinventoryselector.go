package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type MachineInventorySelectorSpec struct {
	// ProviderID is the CAPI contract field. Written by Rancher, never by the operator.
	// +optional
	ProviderID string `json:"providerID,omitempty"`
	// Selector picks the inventories (in this namespace) that may be claimed.
	// +optional
	Selector LabelSelector `json:"selector,omitempty"`
	// TopologySpread (Extension) spreads the selectors of one pool (same
	// namespace, same cluster.x-k8s.io/cluster-name label and
	// cluster.x-k8s.io/cloned-from-name annotation, i.e. the clones of one
	// template for one cluster) across the values of an inventory label, the
	// way a Pod's topologySpreadConstraints spread it across nodes. Unset:
	// any matching inventory.
	// +optional
	TopologySpread *TopologySpread `json:"topologySpread,omitempty"`
}

// WhenUnsatisfiable says what a selector does when claiming would exceed maxSkew.
// +kubebuilder:validation:Enum=DoNotSchedule;ScheduleAnyway
type WhenUnsatisfiable string

const (
	// DoNotSchedule waits rather than exceed maxSkew.
	DoNotSchedule WhenUnsatisfiable = "DoNotSchedule"
	// ScheduleAnyway prefers the least used domain but never waits for one.
	ScheduleAnyway WhenUnsatisfiable = "ScheduleAnyway"
)

// TopologySpread is one topology spread constraint over inventory labels.
type TopologySpread struct {
	// TopologyKey is the inventory label whose values are the domains (e.g.
	// topology.kubernetes.io/zone). The domains are the values found on the
	// inventories the selector matches. Inventories without the label are
	// never claimed under DoNotSchedule and form one domain of their own
	// under ScheduleAnyway.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	TopologyKey string `json:"topologyKey"`
	// MaxSkew is the largest allowed difference between the number of the
	// pool's claims in a domain and in the least used domain.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	MaxSkew int32 `json:"maxSkew,omitempty"`
	// WhenUnsatisfiable: DoNotSchedule (the default) waits, with the short
	// domain named in the InventoryReady condition; ScheduleAnyway claims
	// from the least used domain that has a free inventory.
	// +optional
	// +kubebuilder:default=DoNotSchedule
	WhenUnsatisfiable WhenUnsatisfiable `json:"whenUnsatisfiable,omitempty"`
}

// MachineAddressType is a CAPI/Node address type.
// +kubebuilder:validation:Enum=Hostname;ExternalIP;InternalIP;ExternalDNS;InternalDNS
type MachineAddressType string

const (
	MachineHostName    MachineAddressType = "Hostname"
	MachineExternalIP  MachineAddressType = "ExternalIP"
	MachineInternalIP  MachineAddressType = "InternalIP"
	MachineExternalDNS MachineAddressType = "ExternalDNS"
	MachineInternalDNS MachineAddressType = "InternalDNS"
)

type MachineAddress struct {
	Type MachineAddressType `json:"type"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Address string `json:"address"`
}

// Initialization is the CAPI v1beta2 contract's provisioning flag.
type Initialization struct {
	// +optional
	Provisioned bool `json:"provisioned,omitempty"`
}

type MachineInventorySelectorStatus struct {
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Ready is set once the agent applied the bootstrap plan, and never reverted.
	// +optional
	Ready bool `json:"ready,omitempty"`
	// Initialization (Extension) mirrors Ready for the CAPI v1beta2 contract.
	// +optional
	Initialization *Initialization `json:"initialization,omitempty"`
	// Addresses are written by the operator at most once, and by Rancher after.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=128
	Addresses []MachineAddress `json:"addresses,omitempty"`
	// BootstrapPlanChecksum is the sha256 of the bootstrap plan written for this selector.
	// +optional
	BootstrapPlanChecksum string `json:"bootstrapPlanChecksum,omitempty"`
	// MachineInventoryRef mirrors the claimed inventory's controller ownerRef.
	// +optional
	// +structType=atomic
	MachineInventoryRef *corev1.LocalObjectReference `json:"machineInventoryRef,omitempty"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// MachineInventorySelector is the CAPI InfraMachine: it claims one inventory.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=machineinventoryselectors,scope=Namespaced,shortName=elmis,categories=elemental;cluster-api
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta1=v1beta1"
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta2=v1beta1"
// +kubebuilder:metadata:labels="cluster.x-k8s.io/provider=infrastructure-elemental"
// +kubebuilder:printcolumn:name="Ready",type=boolean,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Inventory",type=string,JSONPath=`.status.machineInventoryRef.name`
// +kubebuilder:printcolumn:name="Machine",type=string,JSONPath=`.metadata.ownerReferences[?(@.kind=="Machine")].name`
// +kubebuilder:printcolumn:name="ProviderID",type=string,JSONPath=`.spec.providerID`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MachineInventorySelector struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MachineInventorySelectorSpec   `json:"spec,omitempty"`
	Status MachineInventorySelectorStatus `json:"status,omitempty"`
}
