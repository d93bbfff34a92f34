package server_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
)

// registerWith runs the real client's conversation with the given hardware
// facts and host-sent annotations and labels.
func registerWith(t *testing.T, mr *elementalv1.MachineRegistration, id string, update bool, facts map[string]interface{}, annotations, labels map[string]string) {
	t.Helper()
	payload, err := client.Register(context.Background(), client.Request{
		URL: mr.Status.RegistrationURL, CACert: hostCA, Authorization: client.PlainAuth(id), Update: update,
		SystemData: facts, Annotations: annotations, Labels: labels,
	})
	require.NoError(t, err, "registration itself succeeds whatever the approval mode")
	require.NotEmpty(t, payload)
}

// Under approval: Manual the server stamps new inventories, approves only
// pre-approved identities, and never lets a host approve or uncordon itself.
func TestManualApproval(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	_, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approved-hosts"},
		StringData: map[string]string{elementalv1.PreApprovedMACsKey: "# rack 1\n52:54:00:a9:00:02, 52:54:00:a9:00:09\n", elementalv1.PreApprovedUUIDsKey: "FD95324A-C26B-4E28-8727-1DCEC293A0EC"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	spec := macRegistration()
	spec.Approval = elementalv1.ApprovalManual
	spec.PreApprovedIdentitiesSecretName = "approved-hosts"
	// A template must not approve, whatever it renders.
	spec.MachineInventoryAnnotations = map[string]string{elementalv1.ApprovedAnnotation: "true", elementalv1.CordonedAnnotation: "${Runtime/Hostname}"}
	mr := newRegistration(t, ns, "manual", spec)

	facts := map[string]interface{}{
		"CPU":     map[string]interface{}{"TotalCores": "4", "TotalThreads": "8", "Processor": map[string]interface{}{"Vendor": "GenuineIntel"}},
		"Memory":  map[string]interface{}{"TotalPhysicalBytes": "8589934592"},
		"Runtime": map[string]interface{}{"Hostname": "h"},
	}
	selfApproving := map[string]string{"approved": "true", elementalv1.ApprovedAnnotation: "true", "approval": "Auto", "cordoned": "x"}
	unknown := "52:54:00:a9:00:01"
	registerWith(t, mr, unknown, false, facts, selfApproving, map[string]string{"approved": "true"})
	mi := inventoryByHash(t, ns, hashOf(unknown))
	require.NotNil(t, mi)
	assert.Equal(t, "Manual", mi.Annotations[elementalv1.ApprovalAnnotation])
	assert.NotContains(t, mi.Annotations, elementalv1.ApprovedAnnotation)
	assert.NotContains(t, mi.Annotations, elementalv1.CordonedAnnotation)
	assert.NotContains(t, mi.Labels, elementalv1.ApprovedAnnotation)
	// Hardware facts land as upstream's labels.
	assert.Equal(t, "8589934592", mi.Labels[elementalv1.TotalMemoryLabel])
	assert.Equal(t, "4", mi.Labels[elementalv1.CPUTotalCoresLabel])
	assert.Equal(t, "8", mi.Labels[elementalv1.CPUTotalThreadsLabel])
	assert.Equal(t, "GenuineIntel", mi.Labels[elementalv1.CPUVendorLabel])

	// Re-registering cannot approve it either.
	registerWith(t, mr, unknown, true, facts, selfApproving, nil)
	mi = inventoryByHash(t, ns, hashOf(unknown))
	assert.NotContains(t, mi.Annotations, elementalv1.ApprovedAnnotation)
	assert.Equal(t, "Manual", mi.Annotations[elementalv1.ApprovalAnnotation])

	// Listed identifiers are approved on arrival: the PLAIN identity, or an
	// SMBIOS UUID the mac host reports (case-insensitively).
	listed := "52:54:00:a9:00:02"
	registerWith(t, mr, listed, false, facts, nil, nil)
	assert.Equal(t, "true", inventoryByHash(t, ns, hashOf(listed)).Annotations[elementalv1.ApprovedAnnotation])
	byUUID := "52:54:00:a9:00:03"
	withUUID := map[string]interface{}{"Product": map[string]interface{}{"UUID": "fd95324a-c26b-4e28-8727-1dcec293a0ec"}}
	registerWith(t, mr, byUUID, false, withUUID, nil, nil)
	assert.Equal(t, "true", inventoryByHash(t, ns, hashOf(byUUID)).Annotations[elementalv1.ApprovedAnnotation])

	// Listing a pending host later approves it at its next registration.
	sec, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "approved-hosts", metav1.GetOptions{})
	require.NoError(t, err)
	sec.Data[elementalv1.PreApprovedMACsKey] = append(sec.Data[elementalv1.PreApprovedMACsKey], []byte("\n"+unknown)...)
	_, err = env.Client.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{})
	require.NoError(t, err)
	registerWith(t, mr, unknown, true, facts, nil, nil)
	assert.Equal(t, "true", inventoryByHash(t, ns, hashOf(unknown)).Annotations[elementalv1.ApprovedAnnotation])

	// Auto (the default) stamps nothing.
	auto := newRegistration(t, ns, "auto", macRegistration())
	autoHost := "52:54:00:a9:00:04"
	registerWith(t, auto, autoHost, false, facts, nil, nil)
	mi = inventoryByHash(t, ns, hashOf(autoHost))
	assert.NotContains(t, mi.Annotations, elementalv1.ApprovalAnnotation)
	assert.NotContains(t, mi.Annotations, elementalv1.ApprovedAnnotation)
}
