package v3

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// APIServiceSpec says which Rancher paths are proxied through the tunnel of
// whoever holds the token Rancher writes into the named Secret.
type APIServiceSpec struct {
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// +optional
	SecretNamespace string `json:"secretNamespace,omitempty"`
	// +optional
	Paths []string `json:"paths,omitempty"`
	// +optional
	PathPrefixes []string `json:"pathPrefixes,omitempty"`
}

type APIServiceStatus struct {
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// +optional
	ServiceAccountNamespace string `json:"serviceAccountNamespace,omitempty"`
}

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// APIService is Rancher's aggregation of an in-cluster service under
// Rancher's own URL (a minimal copy of Rancher's type, same wire shape). The
// operator never reads it: the chart creates it and Rancher fills the Secret
// it names; tests' simulated Rancher reads it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:path=apiservices,scope=Cluster
type APIService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec APIServiceSpec `json:"spec,omitempty"`
	// +optional
	Status APIServiceStatus `json:"status,omitempty"`
}
