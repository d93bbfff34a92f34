package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/elemental-operator/elemental-operator/pkg/admission"
	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	env, err = testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	return m.Run()
}

func TestObjectsMatchTheAgentsWriteBack(t *testing.T) {
	policy, binding, err := admission.Objects()
	require.NoError(t, err)
	assert.Equal(t, policy.Name, binding.Spec.PolicyName)
	var writeBack string
	for _, v := range policy.Spec.Variables {
		if v.Name == "writeBack" {
			writeBack = v.Expression
		}
	}
	quoted := make([]string, len(admission.WriteBackKeys))
	for i, k := range admission.WriteBackKeys {
		quoted[i] = "'" + k + "'"
	}
	assert.Equal(t, "["+strings.Join(quoted, ", ")+"]", writeBack, "the policy and WriteBackKeys must list the same keys")
	for _, k := range []string{plans.KeyAppliedChecksum, plans.KeyAppliedOutput, plans.KeyFailedChecksum, plans.KeyFailedOutput,
		plans.KeyFailureCount, plans.KeySuccessCount, plans.KeyLastApplyTime} {
		assert.Contains(t, admission.WriteBackKeys, k)
	}
	assert.NotContains(t, admission.WriteBackKeys, plans.KeyPlan)
	assert.NotContains(t, admission.WriteBackKeys, plans.KeyMaxFailures, "the agent reads max-failures, never writes it")
}

// TestInstallIsIdempotent: the API is served on the test apiserver (v1.34),
// the first install creates, the second changes nothing.
func TestInstallIsIdempotent(t *testing.T) {
	ctx := context.Background()
	served, err := admission.Served(env.Client)
	require.NoError(t, err)
	require.True(t, served, "ValidatingAdmissionPolicy is GA since 1.30 and on by default")
	require.NoError(t, admission.Install(ctx, env.Client))
	p1, err := env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "elemental-plan-secrets", metav1.GetOptions{})
	require.NoError(t, err)
	b1, err := env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, "elemental-plan-secrets", metav1.GetOptions{})
	require.NoError(t, err)
	require.NoError(t, admission.Install(ctx, env.Client))
	p2, err := env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "elemental-plan-secrets", metav1.GetOptions{})
	require.NoError(t, err)
	b2, err := env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, "elemental-plan-secrets", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, p1.ResourceVersion, p2.ResourceVersion)
	assert.Equal(t, b1.ResourceVersion, b2.ResourceVersion)

	// A drifted spec is put back.
	drift := p2.DeepCopy()
	drift.Spec.Validations = drift.Spec.Validations[:1]
	_, err = env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Update(ctx, drift, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, admission.Install(ctx, env.Client))
	p3, err := env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "elemental-plan-secrets", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, len(p1.Spec.Validations), len(p3.Spec.Validations))
}

// host is a plan Secret with its agent credentials, as the operator creates
// them, and clients acting as the agent (its TokenRequest token) and as admin.
type host struct {
	ns, name string
	agent    kubernetes.Interface
}

func newHost(t *testing.T) host {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, admission.Install(ctx, env.Client))
	ns, err := env.NewNamespace(ctx, "vap")
	require.NoError(t, err)
	// An inventory-shaped owner: only its name and UID matter here.
	mi := &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "host-a", UID: types.UID("7d1c7c4e-0000-4000-8000-000000000001")}}
	secret := plans.NewSecret(mi)
	secret.Data[plans.KeyMaxFailures] = []byte("5")
	_, err = env.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, credentials.Ensure(ctx, env.Client, mi))
	token, _, err := credentials.Token(ctx, env.Client, mi, time.Hour)
	require.NoError(t, err)
	agent := kubernetes.NewForConfigOrDie(&rest.Config{Host: env.Config.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}})
	h := host{ns: ns, name: mi.Name, agent: agent}
	// The API server loads policies asynchronously: wait until it refuses.
	// A probe label that differs each time (an allowed one would stay).
	attempt := 0
	testenv.Eventually(t, time.Minute, func() error {
		attempt++
		err := h.update(func(s *corev1.Secret) { s.Labels["probe"] = fmt.Sprint(attempt) })
		if apierrors.IsForbidden(err) {
			return nil
		}
		return fmt.Errorf("policy not in force yet: %v", err)
	})
	return h
}

// update is the agent's write: a full-object Update of what it read.
func (h host) update(edit func(*corev1.Secret)) error {
	ctx := context.Background()
	s, err := h.agent.CoreV1().Secrets(h.ns).Get(ctx, h.name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	edit(s)
	_, err = h.agent.CoreV1().Secrets(h.ns).Update(ctx, s, metav1.UpdateOptions{})
	return err
}

func (h host) patch(body interface{}) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = h.agent.CoreV1().Secrets(h.ns).Patch(context.Background(), h.name, types.MergePatchType, raw, metav1.PatchOptions{})
	return err
}

func TestAgentWritesBackOnly(t *testing.T) {
	h := newHost(t)

	t.Run("every write-back key, as the agent's Update", func(t *testing.T) {
		require.NoError(t, h.update(func(s *corev1.Secret) {
			for i, k := range admission.WriteBackKeys {
				s.Data[k] = []byte(fmt.Sprint("v", i))
			}
		}))
		require.NoError(t, h.update(func(s *corev1.Secret) {
			s.Data[plans.KeyFailedOutput] = []byte{} // the agent blanks failure keys on success
			s.Data[plans.KeySuccessCount] = []byte("2")
		}))
		require.NoError(t, h.patch(map[string]interface{}{"data": map[string][]byte{plans.KeyAppliedChecksum: []byte("x")}}), "merge patch of a write-back key")
		require.NoError(t, h.update(func(*corev1.Secret) {}), "an unchanged Update")
	})

	refused := map[string]error{
		"data.plan (Update)":      h.update(func(s *corev1.Secret) { s.Data[plans.KeyPlan] = []byte(`{"instructions":[]}`) }),
		"data.plan (merge patch)": h.patch(map[string]interface{}{"data": map[string][]byte{plans.KeyPlan: []byte(`{"instructions":[]}`)}}),
		"data.plan (stringData)":  h.update(func(s *corev1.Secret) { s.StringData = map[string]string{plans.KeyPlan: `{"instructions":[]}`} }),
		"data.plan removed":       h.update(func(s *corev1.Secret) { delete(s.Data, plans.KeyPlan) }),
		"max-failures":            h.update(func(s *corev1.Secret) { s.Data[plans.KeyMaxFailures] = []byte("0") }),
		"a new data key":          h.update(func(s *corev1.Secret) { s.Data["plan-state"] = []byte("x") }),
		"a label":                 h.update(func(s *corev1.Secret) { s.Labels["x"] = "y" }),
		"a label removed":         h.update(func(s *corev1.Secret) { delete(s.Labels, elementalv1.ManagedLabel) }),
		"an annotation":           h.update(func(s *corev1.Secret) { s.Annotations[elementalv1.PlanTypeAnnotation] = elementalv1.PlanTypeBootstrap }),
		"annotations (patch)":     h.patch(map[string]interface{}{"metadata": map[string]interface{}{"annotations": map[string]string{"x": "y"}}}),
		"owner references":        h.update(func(s *corev1.Secret) { s.OwnerReferences = nil }),
		"finalizers":              h.update(func(s *corev1.Secret) { s.Finalizers = []string{"example.com/keep"} }),
		"immutable":               h.update(func(s *corev1.Secret) { yes := true; s.Immutable = &yes }),
	}
	for what, err := range refused {
		assert.True(t, apierrors.IsForbidden(err), "%s: want Forbidden from the admission policy, got %v", what, err)
		if err != nil {
			assert.Contains(t, err.Error(), "elemental-plan-secrets", what)
		}
	}

	// The operator (here: admin credentials) still programs the plan.
	_, err := env.Client.CoreV1().Secrets(h.ns).Patch(context.Background(), h.name, types.MergePatchType,
		plans.Patch([]byte(`{"instructions":[]}`), elementalv1.PlanTypeBootstrap), metav1.PatchOptions{})
	require.NoError(t, err)
	s, err := env.Client.CoreV1().Secrets(h.ns).Get(context.Background(), h.name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, `{"instructions":[]}`, string(s.Data[plans.KeyPlan]))
	assert.Equal(t, "5", string(s.Data[plans.KeyMaxFailures]))
	assert.Equal(t, "x", string(s.Data[plans.KeyAppliedChecksum]))
}

// TestOtherServiceAccountsUntouched: the policy matches agents only; another
// ServiceAccount with the same Role keeps its full rights.
func TestOtherServiceAccountsUntouched(t *testing.T) {
	ctx := context.Background()
	h := newHost(t)
	other := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "not-an-agent"}}
	_, err := env.Client.CoreV1().ServiceAccounts(h.ns).Create(ctx, other, metav1.CreateOptions{})
	require.NoError(t, err)
	rb, err := env.Client.RbacV1().RoleBindings(h.ns).Get(ctx, credentials.Name(h.name), metav1.GetOptions{})
	require.NoError(t, err)
	rb = rb.DeepCopy()
	rb.Subjects = append(rb.Subjects, rb.Subjects[0])
	rb.Subjects[1].Name = other.Name
	_, err = env.Client.RbacV1().RoleBindings(h.ns).Update(ctx, rb, metav1.UpdateOptions{})
	require.NoError(t, err)
	tr, err := env.Client.CoreV1().ServiceAccounts(h.ns).CreateToken(ctx, other.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	require.NoError(t, err)
	client := kubernetes.NewForConfigOrDie(&rest.Config{Host: env.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}})
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := client.CoreV1().Secrets(h.ns).Patch(ctx, h.name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"x":"y"}}}`), metav1.PatchOptions{})
		return err // RBAC of the new subject may take a moment
	})
}

// TestLargeSecretsStayWithinTheCELBudget: a plan and outputs near a Secret's
// 1 MiB limit are still judged (allowed or refused), never failed for cost.
func TestLargeSecretsStayWithinTheCELBudget(t *testing.T) {
	ctx := context.Background()
	h := newHost(t)
	big := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	s, err := env.Client.CoreV1().Secrets(h.ns).Get(ctx, h.name, metav1.GetOptions{})
	require.NoError(t, err)
	s.Data[plans.KeyPlan] = big(450<<10, 'p')
	_, err = env.Client.CoreV1().Secrets(h.ns).Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err, "the operator writes a large plan")

	require.NoError(t, h.update(func(s *corev1.Secret) {
		s.Data[plans.KeyAppliedOutput] = big(250<<10, 'a')
		s.Data["applied-periodic-output"] = big(250<<10, 'b')
	}), "large write-back")
	err = h.update(func(s *corev1.Secret) { s.Data[plans.KeyPlan][0] = 'q' })
	assert.True(t, apierrors.IsForbidden(err), "a one-byte change of a large plan: want Forbidden, got %v", err)
	assert.NotContains(t, fmt.Sprint(err), "cost", "judged, not failed for cost")
}

// TestStaleAgentWriteIsAConflict: the API server checks the resourceVersion
// before validating admission, so an agent's Update of a copy read before the
// operator changed the Secret gets 409 Conflict, as without the policy (agent
// v0.3.4 then re-reads and retries when the plan is unchanged), not 403.
func TestStaleAgentWriteIsAConflict(t *testing.T) {
	ctx := context.Background()
	h := newHost(t)
	stale, err := h.agent.CoreV1().Secrets(h.ns).Get(ctx, h.name, metav1.GetOptions{})
	require.NoError(t, err)
	_, err = env.Client.CoreV1().Secrets(h.ns).Patch(ctx, h.name, types.MergePatchType,
		plans.Patch([]byte(`{"instructions":[]}`), elementalv1.PlanTypeBootstrap), metav1.PatchOptions{})
	require.NoError(t, err)
	stale.Data[plans.KeyAppliedChecksum] = []byte(plans.EmptyChecksum)
	_, err = h.agent.CoreV1().Secrets(h.ns).Update(ctx, stale, metav1.UpdateOptions{})
	assert.True(t, apierrors.IsConflict(err), "want Conflict, got %v", err)
}
