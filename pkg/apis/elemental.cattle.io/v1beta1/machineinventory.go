package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type MachineInventorySpec struct {
	// TPMHash is the lowercase hex sha256 of the DER (PKIX) TPM EK public key.
	// +optional
	TPMHash string `json:"tpmHash,omitempty"`
	// MachineHash is the lowercase hex sha256 of the PLAIN identifier (MAC or SMBIOS UUID).
	// +optional
	MachineHash string `json:"machineHash,omitempty"`
	// IPAddressClaims are IPAM claims per pool. Preserved, unused for now.
	// +optional
	// +mapType=atomic
	IPAddressClaims map[string]*corev1.ObjectReference `json:"ipAddressClaims,omitempty"`
	// IPAddressPools are copied from the registration's network.ipAddresses. Preserved.
	// +optional
	// +mapType=atomic
	IPAddressPools map[string]*corev1.TypedLocalObjectReference `json:"ipAddressPools,omitempty"`
	// Network is the IPAM result. Preserved.
	// +optional
	Network NetworkConfig `json:"network,omitempty"`
}

// PlanState is the agent's verdict on the plan currently in the Secret.
// +kubebuilder:validation:Enum=Applied;Failed
type PlanState string

const (
	PlanApplied PlanState = "Applied"
	PlanFailed  PlanState = "Failed"
)

type PlanStatus struct {
	// SecretRef is the plan Secret, always <namespace>/<inventory name>.
	// +optional
	SecretRef *corev1.ObjectReference `json:"secretRef,omitempty"`
	// Checksum is the hex sha256 of the bytes currently in the Secret's data.plan.
	// +optional
	Checksum string `json:"checksum,omitempty"`
	// State is Applied or Failed against Checksum; empty while pending.
	// +optional
	State PlanState `json:"state,omitempty"`
	// Type (Extension) mirrors the Secret's elemental.cattle.io/plan.type annotation.
	// +optional
	Type string `json:"type,omitempty"`
	// AppliedChecksum (Extension) is the agent's applied-checksum.
	// +optional
	AppliedChecksum string `json:"appliedChecksum,omitempty"`
	// FailedChecksum (Extension) is the agent's failed-checksum.
	// +optional
	FailedChecksum string `json:"failedChecksum,omitempty"`
	// FailureCount (Extension) is the agent's failure-count, when State is Failed.
	// +optional
	FailureCount int `json:"failureCount,omitempty"`
	// LastApplyTime (Extension) is the agent's last-apply-time.
	// +optional
	LastApplyTime *metav1.Time `json:"lastApplyTime,omitempty"`
}

type MachineInventoryStatus struct {
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// +optional
	Plan *PlanStatus `json:"plan,omitempty"`
	// Phase (Extension) is an informational summary; nothing depends on it:
	// Registered, PendingApproval, Cordoned, Available, Claimed, Provisioned,
	// Releasing, Resetting or Deleting.
	// +optional
	Phase string `json:"phase,omitempty"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// MachineInventory is one registered host. Admins control whether it may be
// claimed with two annotations (Extension): elemental.cattle.io/cordoned:
// "<reason>" (any non-empty value) keeps it from being claimed, and
// elemental.cattle.io/approved: "true" approves an inventory registered
// under approval: Manual (stamped elemental.cattle.io/approval: Manual by the
// registration server). Neither affects a claim it already has, and no
// registration can set them.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=machineinventories,scope=Namespaced,shortName=elmi,categories=elemental
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta1=v1beta1"
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta2=v1beta1"
// +kubebuilder:metadata:labels="cluster.x-k8s.io/provider=infrastructure-elemental"
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Selector",type=string,JSONPath=`.metadata.ownerReferences[?(@.kind=="MachineInventorySelector")].name`
// +kubebuilder:printcolumn:name="Cordoned",type=string,JSONPath=`.metadata.annotations.elemental\.cattle\.io/cordoned`
// +kubebuilder:printcolumn:name="Plan",type=string,JSONPath=`.status.plan.state`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MachineInventory struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MachineInventorySpec   `json:"spec,omitempty"`
	Status MachineInventoryStatus `json:"status,omitempty"`
}
