package chart

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chartutil"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/elemental-operator/elemental-operator/pkg/admission"
)

// TestPlanSecretPolicy: the chart ships the same admission policy and binding
// the operator installs with --install-crds, when the cluster serves the
// API, and nothing on a cluster without it (Kubernetes before 1.30).
func TestPlanSecretPolicy(t *testing.T) {
	caps := withKinds("admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy", "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding")
	r, err := renderFor(operatorChart, nil, caps)
	require.NoError(t, err)
	wantPolicy, wantBinding, err := admission.Objects()
	require.NoError(t, err)

	p := r.find("ValidatingAdmissionPolicy", wantPolicy.Name)
	require.NotNil(t, p, "policy rendered")
	var policy admissionv1.ValidatingAdmissionPolicy
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(p.Object, &policy))
	assert.Equal(t, wantPolicy.Spec, policy.Spec, "chart and embedded policy differ: run scripts/generate")
	assert.Equal(t, releaseName, policy.Labels["app.kubernetes.io/name"])

	b := r.find("ValidatingAdmissionPolicyBinding", wantBinding.Name)
	require.NotNil(t, b, "binding rendered")
	var binding admissionv1.ValidatingAdmissionPolicyBinding
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(b.Object, &binding))
	assert.Equal(t, wantBinding.Spec, binding.Spec)

	old := *chartutil.DefaultCapabilities
	old.APIVersions = nil
	for _, v := range chartutil.DefaultCapabilities.APIVersions {
		if v != "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy" {
			old.APIVersions = append(old.APIVersions, v)
		}
	}
	r, err = renderFor(operatorChart, nil, &old)
	require.NoError(t, err)
	assert.Nil(t, r.find("ValidatingAdmissionPolicy", ""), "not served: not rendered")
	assert.Nil(t, r.find("ValidatingAdmissionPolicyBinding", ""))
}
