package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TemplateObjectMeta declares labels and annotations so the API server keeps
// them (upstream declared an empty object and they were pruned).
type TemplateObjectMeta struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// MachineInventorySelectorTemplateResource is what CAPI clones into each selector.
type MachineInventorySelectorTemplateResource struct {
	// APIVersion and Kind, when set, must name MachineInventorySelector; CAPI copies them.
	metav1.TypeMeta `json:",inline"`
	// +optional
	ObjectMeta TemplateObjectMeta `json:"metadata,omitempty"`
	// +optional
	Spec MachineInventorySelectorSpec `json:"spec,omitempty"`
	// Status is accepted for upstream compatibility and dropped on create.
	// +optional
	Status MachineInventorySelectorStatus `json:"status,omitempty"`
}

type MachineInventorySelectorTemplateSpec struct {
	Template MachineInventorySelectorTemplateResource `json:"template"`
}

// MachineInventorySelectorTemplateStatus (Extension) reports pool capacity.
type MachineInventorySelectorTemplateStatus struct {
	// MatchingInventories is how many inventories in the namespace the selector matches.
	// +optional
	MatchingInventories int `json:"matchingInventories"`
	// AvailableInventories is how many of those are free: Ready, not deleting, not claimed.
	// +optional
	AvailableInventories int `json:"availableInventories"`
	// The "why not" counts (Extension): each matching inventory is counted
	// once, in the first class that applies: deleting, claimed, cordoned,
	// pendingApproval, notReady, available. They add up to matchingInventories.
	//
	// DeletingInventories are being deleted.
	// +optional
	DeletingInventories int `json:"deletingInventories,omitempty"`
	// ClaimedInventories are held by a selector.
	// +optional
	ClaimedInventories int `json:"claimedInventories,omitempty"`
	// CordonedInventories carry a non-empty elemental.cattle.io/cordoned annotation.
	// +optional
	CordonedInventories int `json:"cordonedInventories,omitempty"`
	// PendingApprovalInventories wait for elemental.cattle.io/approved: "true".
	// +optional
	PendingApprovalInventories int `json:"pendingApprovalInventories,omitempty"`
	// NotReadyInventories are none of the above and not free: not Ready, not on
	// the empty plan, or being released.
	// +optional
	NotReadyInventories int `json:"notReadyInventories,omitempty"`
	// Capacity (Extension) is the Cluster API autoscale-from-zero field of an
	// InfraMachineTemplate: the resources of a node this pool would add, the
	// minimum over the available matching inventories of the hardware facts
	// reported at registration (cpu: the elemental.cattle.io/CpuTotalThreads
	// label, else CpuTotalCores; memory: TotalMemory, in bytes). Unset when no
	// available inventory reports them.
	// +optional
	Capacity corev1.ResourceList `json:"capacity,omitempty"`
	// NodeInfo (Extension) is the Cluster API autoscale-from-zero node
	// information: operatingSystem (always linux) and architecture (when every
	// available matching inventory agrees on it).
	// +optional
	NodeInfo *NodeInfo `json:"nodeInfo,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodeInfo is the Cluster API contract's subset of a Node's system info.
type NodeInfo struct {
	// Architecture as in a Node's status.nodeInfo.architecture (amd64, arm64).
	// +optional
	Architecture string `json:"architecture,omitempty"`
	// OperatingSystem as in a Node's status.nodeInfo.operatingSystem (linux).
	// +optional
	OperatingSystem string `json:"operatingSystem,omitempty"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// MachineInventorySelectorTemplate is the CAPI InfraMachineTemplate.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=machineinventoryselectortemplates,scope=Namespaced,shortName=elmist,categories=elemental;cluster-api
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta1=v1beta1"
// +kubebuilder:metadata:labels="cluster.x-k8s.io/v1beta2=v1beta1"
// +kubebuilder:metadata:labels="cluster.x-k8s.io/provider=infrastructure-elemental"
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=`.status.availableInventories`
// +kubebuilder:printcolumn:name="Matching",type=integer,JSONPath=`.status.matchingInventories`
// +kubebuilder:printcolumn:name="Claimed",type=integer,JSONPath=`.status.claimedInventories`
// +kubebuilder:printcolumn:name="Cordoned",type=integer,JSONPath=`.status.cordonedInventories`
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.pendingApprovalInventories`
// +kubebuilder:printcolumn:name="NotReady",type=integer,JSONPath=`.status.notReadyInventories`,priority=1
// +kubebuilder:printcolumn:name="Deleting",type=integer,JSONPath=`.status.deletingInventories`,priority=1
// +kubebuilder:printcolumn:name="CPU",type=string,JSONPath=`.status.capacity.cpu`,priority=1
// +kubebuilder:printcolumn:name="Memory",type=string,JSONPath=`.status.capacity.memory`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MachineInventorySelectorTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MachineInventorySelectorTemplateSpec   `json:"spec"`
	Status MachineInventorySelectorTemplateStatus `json:"status,omitempty"`
}
