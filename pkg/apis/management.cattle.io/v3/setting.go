package v3

// Setting is the one Rancher management type the operator reads. A minimal copy
// of rancher's type keeps rancher/rancher (and its client-go replace directive)
// out of our module graph; the wire shape is the same.

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Setting is a cluster-scoped Rancher setting. Its fields are top level, not under spec.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=settings,scope=Cluster
// +kubebuilder:printcolumn:name="Value",type=string,JSONPath=`.value`
type Setting struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Value string `json:"value"`
	// +optional
	Default string `json:"default"`
	// +optional
	Customized bool `json:"customized"`
	// +optional
	Source string `json:"source"`
}

// Effective is value when non-empty, else default (upstream read only value).
func (s *Setting) Effective() string {
	if s == nil {
		return ""
	}
	if s.Value != "" {
		return s.Value
	}
	return s.Default
}
