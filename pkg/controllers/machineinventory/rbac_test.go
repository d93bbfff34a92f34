package machineinventory_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// A new inventory gets the Role and RoleBinding of its agent credential from
// the controller (the registration server only creates its ServiceAccount
// and issues the token), and the token then reaches its plan Secret only.
func TestNewInventoryGetsItsAgentAccess(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	mi := newInventory(t, ns, "host-1", nil)
	other := newInventory(t, ns, "host-2", nil)
	// What the registration server does: the ServiceAccount and a token.
	require.NoError(t, credentials.EnsureServiceAccount(ctx, env.Client, mi))
	token, _, err := credentials.Token(ctx, env.Client, mi, time.Hour)
	require.NoError(t, err)

	getSecret(t, ns, "host-1")
	getSecret(t, ns, "host-2")
	role, err := env.Client.RbacV1().Roles(ns).Get(ctx, credentials.Name("host-1"), metav1.GetOptions{})
	require.NoError(t, err, "the Role exists before the plan Secret")
	assert.Equal(t, []rbacv1.PolicyRule{{
		APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"host-1"},
		Verbs: []string{"get", "list", "watch", "update", "patch"},
	}}, role.Rules)
	rb, err := env.Client.RbacV1().RoleBindings(ns).Get(ctx, credentials.Name("host-1"), metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: credentials.Name("host-1")}, rb.RoleRef)
	assert.Equal(t, []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: credentials.Name("host-1"), Namespace: ns}}, rb.Subjects)
	for _, obj := range []metav1.Object{role, rb} {
		require.Len(t, obj.GetOwnerReferences(), 1)
		assert.Equal(t, mi.UID, obj.GetOwnerReferences()[0].UID)
		assert.Equal(t, "true", obj.GetLabels()[elementalv1.ManagedLabel])
	}

	host := kubernetes.NewForConfigOrDie(&rest.Config{Host: env.Config.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}})
	s, err := host.CoreV1().Secrets(ns).Get(ctx, "host-1", metav1.GetOptions{})
	require.NoError(t, err)
	s.Data["applied-checksum"] = []byte("x")
	_, err = host.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = host.CoreV1().Secrets(ns).Get(ctx, "host-2", metav1.GetOptions{})
	assert.True(t, apierrors.IsForbidden(err), "another host's plan: %v", err)
	_, err = env.Client.RbacV1().Roles(ns).Get(ctx, credentials.Name(other.Name), metav1.GetOptions{})
	assert.NoError(t, err, "every inventory gets its own Role")
}

// The Role grants access by name: it is never created while the name belongs
// to someone else's Secret.
func TestNoAccessToAForeignSecret(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "precious"}, StringData: map[string]string{"password": "x"}}
	_, err := env.Client.CoreV1().Secrets(ns).Create(ctx, foreign, metav1.CreateOptions{})
	require.NoError(t, err)
	newInventory(t, ns, "precious", nil)
	waitReason(t, ns, "precious", elementalv1.ConditionReady, metav1.ConditionFalse, elementalv1.ReasonPlanCreationFailure, 30*time.Second)
	for what, get := range map[string]func() error{
		"role": func() error {
			_, err := env.Client.RbacV1().Roles(ns).Get(ctx, credentials.Name("precious"), metav1.GetOptions{})
			return err
		},
		"rolebinding": func() error {
			_, err := env.Client.RbacV1().RoleBindings(ns).Get(ctx, credentials.Name("precious"), metav1.GetOptions{})
			return err
		},
	} {
		assert.True(t, apierrors.IsNotFound(get()), "%s granted on a foreign Secret", what)
	}
}

// A Role of that name that is not the inventory's: left alone, reported,
// and no plan Secret (nor RoleBinding) until it is gone.
func TestAgentAccessConflict(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	theirs := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credentials.Name("clash")}}
	_, err := env.Client.RbacV1().Roles(ns).Create(ctx, theirs, metav1.CreateOptions{})
	require.NoError(t, err)
	newInventory(t, ns, "clash", nil)
	waitEvent(t, ns, "clash", "CredentialConflict", "is not owned by this inventory")
	_, err = env.Client.CoreV1().Secrets(ns).Get(ctx, "clash", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no plan Secret without the access: %v", err)
	_, err = env.Client.RbacV1().RoleBindings(ns).Get(ctx, credentials.Name("clash"), metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no RoleBinding to someone else's Role: %v", err)
	role, err := env.Client.RbacV1().Roles(ns).Get(ctx, credentials.Name("clash"), metav1.GetOptions{})
	require.NoError(t, err)
	assert.Empty(t, role.OwnerReferences, "left alone")

	// Once it is gone, the next look creates everything.
	require.NoError(t, env.Client.RbacV1().Roles(ns).Delete(ctx, credentials.Name("clash"), metav1.DeleteOptions{}))
	_, err = inventories.Patch(ns, "clash", types.MergePatchType, []byte(`{"metadata":{"labels":{"poke":"1"}}}`))
	require.NoError(t, err)
	getSecret(t, ns, "clash")
	eventually(t, 10*time.Second, func() error {
		role, err := env.Client.RbacV1().Roles(ns).Get(ctx, credentials.Name("clash"), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(role.OwnerReferences) != 1 {
			return fmt.Errorf("role not ours: %v", role.OwnerReferences)
		}
		_, err = env.Client.RbacV1().RoleBindings(ns).Get(ctx, credentials.Name("clash"), metav1.GetOptions{})
		return err
	})
}

// The real rancher-system-agent started with a token whose access does not
// exist yet (what a registration reply gives before the controller caught
// up, here held back by a foreign Role) keeps retrying, and applies the plan
// once the access and the plan Secret appear.
func TestRealAgentWaitsForItsAccess(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	theirs := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credentials.Name("late")}}
	_, err := env.Client.RbacV1().Roles(ns).Create(ctx, theirs, metav1.CreateOptions{})
	require.NoError(t, err)
	mi := newInventory(t, ns, "late", nil)
	// What the registration server does: the ServiceAccount and a token.
	require.NoError(t, credentials.EnsureServiceAccount(ctx, env.Client, mi))
	token, _, err := credentials.Token(ctx, env.Client, mi, time.Hour)
	require.NoError(t, err)
	waitEvent(t, ns, "late", "CredentialConflict", "is not owned by this inventory")

	agent, err := testenv.StartAgent(testenv.AgentOptionsFor(env.Config, token, ns, "late"))
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent output:\n%s", agent.Output())
		}
		agent.Stop()
	})
	eventually(t, 30*time.Second, func() error {
		if !strings.Contains(strings.ToLower(agent.Output()), "forbidden") {
			return fmt.Errorf("the agent has not tried its list yet")
		}
		return nil
	})
	testenv.Consistently(t, 2*time.Second, func() error {
		if agent.Exited() {
			return fmt.Errorf("the agent gave up without its access:\n%s", agent.Output())
		}
		return nil
	})

	require.NoError(t, env.Client.RbacV1().Roles(ns).Delete(ctx, credentials.Name("late"), metav1.DeleteOptions{}))
	_, err = inventories.Patch(ns, "late", types.MergePatchType, []byte(`{"metadata":{"labels":{"poke":"1"}}}`))
	require.NoError(t, err)
	waitReason(t, ns, "late", elementalv1.ConditionReady, metav1.ConditionTrue, elementalv1.ReasonPlanSuccessfullyApplied, 90*time.Second)
}
