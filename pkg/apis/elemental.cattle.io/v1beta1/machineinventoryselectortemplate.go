package v1beta1

import (
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
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
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
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MachineInventorySelectorTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MachineInventorySelectorTemplateSpec   `json:"spec"`
	Status MachineInventorySelectorTemplateStatus `json:"status,omitempty"`
}
