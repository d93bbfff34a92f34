package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReleasePolicy decides what happens to a claimed inventory when its selector goes.
// +kubebuilder:validation:Enum=Release;Delete
type ReleasePolicy string

const (
	// ReleasePolicyRelease returns the inventory to the pool with a cleanup plan.
	ReleasePolicyRelease ReleasePolicy = "Release"
	// ReleasePolicyDelete deletes the inventory (upstream behaviour).
	ReleasePolicyDelete ReleasePolicy = "Delete"
)

// Approval decides whether hosts registered through a MachineRegistration may
// be claimed at once.
// +kubebuilder:validation:Enum=Auto;Manual
type Approval string

const (
	// ApprovalAuto: new inventories may be claimed once ready (upstream behaviour).
	ApprovalAuto Approval = "Auto"
	// ApprovalManual: new inventories wait for an admin's approval.
	ApprovalManual Approval = "Manual"
)

// Keys of the pre-approved identities Secret (spec.preApprovedIdentitiesSecretName).
const (
	PreApprovedTPMHashesKey = "tpmHashes"
	PreApprovedMACsKey      = "macs"
	PreApprovedUUIDsKey     = "uuids"
)

type MachineRegistrationSpec struct {
	// Token is a static registration token; it must be unique across all
	// MachineRegistrations. When empty, a random token is generated once.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`
	Token string `json:"token,omitempty"`
	// MachineName is the template for new inventories' names (and host names).
	// +optional
	MachineName string `json:"machineName,omitempty"`
	// MachineInventoryLabels are label templates, re-rendered at every registration.
	// +optional
	MachineInventoryLabels map[string]string `json:"machineInventoryLabels,omitempty"`
	// MachineInventoryAnnotations are annotation templates, re-rendered at every registration.
	// +optional
	MachineInventoryAnnotations map[string]string `json:"machineInventoryAnnotations,omitempty"`
	// LabelPrefix prefixes keys sent by the client: "" means elemental.cattle.io, "-" means none.
	// +optional
	LabelPrefix string `json:"labelPrefix,omitempty"`
	// Config is handed to registering hosts.
	// +optional
	Config Config `json:"config,omitempty"`
	// ReleasePolicy (Extension) is copied to new inventories at first registration.
	// +optional
	// +kubebuilder:default:=Release
	ReleasePolicy ReleasePolicy `json:"releasePolicy,omitempty"`
	// Approval (Extension): Auto (the default, also when empty: no schema
	// default, so upstream objects read back unchanged) lets new inventories
	// be claimed once ready; Manual stamps each new inventory elemental.cattle.io/approval:
	// Manual, and it is not claimed until an admin annotates it
	// elemental.cattle.io/approved: "true". Registration itself, and the host's
	// agent credential, are the same in both modes. Only inventories created
	// while Manual is set are gated.
	// +optional
	Approval Approval `json:"approval,omitempty"`
	// PreApprovedIdentitiesSecretName (Extension), used with approval: Manual,
	// names a Secret in this namespace listing hosts approved on arrival. Its
	// data keys tpmHashes (an inventory's spec.tpmHash), macs and uuids (the
	// PLAIN identifier of mac or sys-uuid registrations, or any NIC MAC or the
	// SMBIOS UUID the host reports) hold entries separated by whitespace or
	// commas, compared case-insensitively; lines starting with # are comments.
	// A missing or unreadable Secret approves no one.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PreApprovedIdentitiesSecretName string `json:"preApprovedIdentitiesSecretName,omitempty"`
	// Limits (Extension) bound the MachineInventories that new hosts create
	// through this registration. Unset: no limit (upstream behaviour). A host
	// that already has its inventory is never refused by them.
	// +optional
	Limits *RegistrationLimits `json:"limits,omitempty"`
}

// RegistrationLimits (Extension) bound the MachineInventories new hosts
// create through one MachineRegistration. A refused host gets an Error
// naming the limit and creates nothing (no inventory, ServiceAccount or
// Secret); the MachineRegistration gets a RegistrationRefused Warning Event
// (at most one per limit a minute).
type RegistrationLimits struct {
	// MaxInventories caps this registration's MachineInventories: those in
	// its namespace annotated elemental.cattle.io/machine-registration with
	// its name and not being deleted. A new host beyond it is refused; 0
	// admits no new host. Unset: no limit.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxInventories *int32 `json:"maxInventories,omitempty"`
	// NewInventoriesPerMinute caps the MachineInventories created through
	// this registration in any 60 seconds (by their creationTimestamp). Each
	// replica counts the inventories its cache has seen plus its own
	// creations not seen yet, so replicas that admit hosts within the same
	// moment (before their watches deliver each other's creations, usually
	// well under a second) can together exceed it by that much. Unset: no
	// limit.
	// +optional
	// +kubebuilder:validation:Minimum=1
	NewInventoriesPerMinute *int32 `json:"newInventoriesPerMinute,omitempty"`
}

type MachineRegistrationStatus struct {
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// RegistrationURL is <base>/elemental/registration/<registrationToken>, kept
	// current when the base URL changes.
	// +optional
	RegistrationURL string `json:"registrationURL,omitempty"`
	// RegistrationToken is spec.token, or a generated random token.
	// +optional
	RegistrationToken string `json:"registrationToken,omitempty"`
	// ServiceAccountRef is upstream's registration-wide account. Never set by this
	// operator (credentials are per inventory); an existing value is left alone.
	// +optional
	ServiceAccountRef *corev1.ObjectReference `json:"serviceAccountRef,omitempty"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// MachineRegistration defines how hosts register.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=machineregistrations,scope=Namespaced,shortName=elmr,categories=elemental
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta1=v1beta1"
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta2=v1beta1"
// +kubebuilder:metadata:labels="cluster.x-k8s.io/provider=infrastructure-elemental"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.registrationURL`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MachineRegistration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MachineRegistrationSpec   `json:"spec,omitempty"`
	Status MachineRegistrationStatus `json:"status,omitempty"`
}
