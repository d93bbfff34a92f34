package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MetadataChannel is accepted so upstream-written Metadata objects keep
// their channel list; the operator does not read it.
type MetadataChannel struct {
	// +optional
	DefaultName string `json:"defaultName,omitempty"`
	// +optional
	BaseOS string `json:"baseOS,omitempty"`
	// +optional
	BaseOSVersion string `json:"baseOSVersion,omitempty"`
	// +optional
	Flavor string `json:"flavor,omitempty"`
	// +optional
	URI string `json:"uri,omitempty"`
	// +optional
	Description string `json:"description,omitempty"`
}

type MetadataSpec struct {
	// AppVersion is the installed operator's version; the Rancher UI
	// extension chooses its defaults and features by it.
	// +optional
	AppVersion string `json:"appVersion,omitempty"`
	// Annotations are free-form hints for the UI.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// +optional
	Channels []MetadataChannel `json:"channels,omitempty"`
}

type MetadataStatus struct{}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Metadata describes the installed operator to the Rancher UI extension. The
// operator chart creates one; nothing in the operator reads or writes it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=metadata,scope=Namespaced,categories=elemental
// +kubebuilder:printcolumn:name="AppVersion",type=string,JSONPath=`.spec.appVersion`
type Metadata struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec MetadataSpec `json:"spec,omitempty"`
	// +optional
	Status MetadataStatus `json:"status,omitempty"`
}
