package controllers

import (
	"testing"

	"github.com/rancher/wrangler/v3/pkg/schemes"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// Built-in kinds get protobuf clients; custom resources, which the API
// server serves as JSON only, keep JSON.
func TestProtobufForBuiltinKindsOnly(t *testing.T) {
	f, err := newClientFactory(&rest.Config{Host: "https://127.0.0.1:6443"}, schemes.All)
	require.NoError(t, err)
	for _, tc := range []struct {
		gvr   schema.GroupVersionResource
		kind  string
		proto bool
	}{
		{corev1.SchemeGroupVersion.WithResource("secrets"), "Secret", true},
		{rbacv1.SchemeGroupVersion.WithResource("roles"), "Role", true},
		{elementalv1.SchemeGroupVersion.WithResource("machineinventories"), "MachineInventory", false},
		{schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "machines"}, "Machine", false},
	} {
		got := f.ForResourceKind(tc.gvr, tc.kind, true).Config.ContentType
		if tc.proto {
			assert.Equal(t, runtime.ContentTypeProtobuf, got, tc.kind)
		} else {
			assert.NotEqual(t, runtime.ContentTypeProtobuf, got, tc.kind)
		}
	}
}
