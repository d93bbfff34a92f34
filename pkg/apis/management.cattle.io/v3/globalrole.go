package v3

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GlobalRole is Rancher's global permission set (a minimal copy of Rancher's
// type, same wire shape), for chart tests on an apiserver that serves it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=globalroles,scope=Cluster
type GlobalRole struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	DisplayName string `json:"displayName,omitempty"`
	// +optional
	Description string `json:"description,omitempty"`
	// +optional
	Rules []rbacv1.PolicyRule `json:"rules,omitempty"`
	// +optional
	NewUserDefault bool `json:"newUserDefault,omitempty"`
	// +optional
	Builtin bool `json:"builtin,omitempty"`
	// +optional
	InheritedClusterRoles []string `json:"inheritedClusterRoles,omitempty"`
}
