package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
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

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
	"github.com/elemental-operator/elemental-operator/pkg/server"
)

// keyedLabel is the identity-hash label the server must write: the HMAC
// under the key stored in the operator's namespace.
func keyedLabel(t *testing.T, tpm bool, hash string) string {
	t.Helper()
	s, err := env.Client.CoreV1().Secrets(operatorNS).Get(context.Background(), server.IdentityKeySecret, metav1.GetOptions{})
	require.NoError(t, err)
	return server.IdentityLabel(s.Data["key"], tpm, hash)
}

// agentClient is what a host's agent does with its token.
func agentClient(t *testing.T, token string) kubernetes.Interface {
	t.Helper()
	rc := rest.AnonymousClientConfig(env.Config)
	rc.BearerToken = token
	c, err := kubernetes.NewForConfig(rc)
	require.NoError(t, err)
	return c
}

// readsPlan waits until the token reads its plan Secret (access comes from
// the inventory controller just after a first registration).
func readsPlan(t *testing.T, token, ns, name string) {
	t.Helper()
	c := agentClient(t, token)
	eventually(t, 20*time.Second, func() error {
		_, err := c.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
		return err
	})
}

// revoked waits until a real request with the token gets 401.
func revoked(t *testing.T, token, ns, name, why string) {
	t.Helper()
	c := agentClient(t, token)
	eventually(t, 20*time.Second, func() error {
		_, err := c.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsUnauthorized(err) {
			return nil
		}
		return fmt.Errorf("%s: want 401, got %v", why, err)
	})
}

func annotate(t *testing.T, ns, name, key, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)
	_, err := inventories.Patch(ns, name, types.MergePatchType, []byte(patch))
	require.NoError(t, err)
}

// Every token carries its ServiceAccount's UID: rotating (annotation),
// deleting the account, or deleting the inventory revokes the token at once,
// and the host's next registration gets one that works.
func TestTokenRevocation(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "bound", macRegistration())
	const id = "52:54:00:b0:00:01"
	cfg, err := register(t, mr, host{id: id})
	require.NoError(t, err)
	name := cfg.Elemental.SystemAgent.SecretName
	first := cfg.Elemental.SystemAgent.Token
	readsPlan(t, first, ns, name)

	mi, err := inventories.Get(ns, name, metav1.GetOptions{})
	require.NoError(t, err)
	sa, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, credentials.Name(name), metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, metav1.GetControllerOf(sa))
	assert.Equal(t, mi.UID, metav1.GetControllerOf(sa).UID)
	assert.Empty(t, sa.Annotations[elementalv1.CredentialRotationAnnotation], "no rotation asked for")

	// A re-registration keeps the account: earlier tokens stay valid.
	cfg, err = register(t, mr, host{id: id, update: true})
	require.NoError(t, err)
	second := cfg.Elemental.SystemAgent.Token
	readsPlan(t, first, ns, name)
	readsPlan(t, second, ns, name)

	// Rotation by annotation: the inventory controller replaces the
	// account; both tokens are refused, the next registration's works.
	annotate(t, ns, name, elementalv1.RotateCredentialAnnotation, "2026-11-28T12:00:00Z")
	revoked(t, first, ns, name, "first token after rotation")
	revoked(t, second, ns, name, "second token after rotation")
	eventually(t, 10*time.Second, func() error {
		for _, e := range events(t, ns) {
			if e.InvolvedObject.Name == name && e.Reason == "CredentialRotated" {
				return nil
			}
		}
		return fmt.Errorf("no CredentialRotated event")
	})
	var rotated *corev1.ServiceAccount
	eventually(t, 10*time.Second, func() error {
		rotated, err = env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, sa.Name, metav1.GetOptions{})
		return err
	})
	assert.NotEqual(t, sa.UID, rotated.UID)
	assert.Equal(t, "2026-11-28T12:00:00Z", rotated.Annotations[elementalv1.CredentialRotationAnnotation])
	cfg, err = register(t, mr, host{id: id, update: true})
	require.NoError(t, err)
	third := cfg.Elemental.SystemAgent.Token
	readsPlan(t, third, ns, name)
	revoked(t, first, ns, name, "first token after the next registration")
	again, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, sa.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, rotated.UID, again.UID, "a rotation is made once")

	// Deleting the account revokes at once (nothing waits for a garbage
	// collector); the next registration creates a new one.
	uid := rotated.UID
	require.NoError(t, env.Client.CoreV1().ServiceAccounts(ns).Delete(ctx, rotated.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}))
	revoked(t, third, ns, name, "token after deleting its ServiceAccount")
	cfg, err = register(t, mr, host{id: id, update: true})
	require.NoError(t, err)
	fourth := cfg.Elemental.SystemAgent.Token
	readsPlan(t, fourth, ns, name)

	// Deleting the inventory deletes the account (finalizer; no reset to
	// wait for, the host is not running an agent).
	annotate(t, ns, name, elementalv1.SkipResetAnnotation, "true")
	require.NoError(t, inventories.Delete(ns, name, &metav1.DeleteOptions{}))
	revoked(t, fourth, ns, name, "token after deleting the inventory")
	eventually(t, 30*time.Second, func() error {
		_, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, sa.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("ServiceAccount still there: %v", err)
	})
}

// An inventory written by an older version: the unkeyed identity label, a
// ServiceAccount without a rotation record and its token. The host
// re-registers: found (no second inventory) and relabelled; its old token
// works until a rotation, which replaces the ServiceAccount and revokes it.
func TestLegacyInventory(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "legacy", macRegistration())
	const id = "52:54:00:1e:9a:c1"
	hash := hashOf(id)
	mi, err := inventories.Create(&elementalv1.MachineInventory{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: "old-host",
			Labels:      map[string]string{elementalv1.IdentityHashLabel: hash[:32]},
			Annotations: map[string]string{elementalv1.MachineRegistrationAnnotation: mr.Name},
			Finalizers:  []string{elementalv1.MachineInventoryFinalizer},
		},
		Spec: elementalv1.MachineInventorySpec{MachineHash: hash},
	})
	require.NoError(t, err)
	sa, _, _ := credentials.Objects(mi)
	sa, err = env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
	require.NoError(t, err)
	ttl := int64(3600)
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	require.NoError(t, err)
	legacyToken := tr.Status.Token
	readsPlan(t, legacyToken, ns, mi.Name)

	cfg, err := register(t, mr, host{id: id, update: true})
	require.NoError(t, err)
	assert.Equal(t, mi.Name, cfg.Elemental.SystemAgent.SecretName)
	list, err := inventories.List(ns, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, list.Items, 1, "no second inventory")
	assert.Equal(t, mi.UID, list.Items[0].UID)
	label := list.Items[0].Labels[elementalv1.IdentityHashLabel]
	assert.Equal(t, keyedLabel(t, false, hash), label, "relabelled with the keyed value")
	assert.NotEqual(t, hash[:32], label)
	readsPlan(t, cfg.Elemental.SystemAgent.Token, ns, mi.Name)
	readsPlan(t, legacyToken, ns, mi.Name) // valid until a rotation

	annotate(t, ns, mi.Name, elementalv1.RotateCredentialAnnotation, "1")
	revoked(t, legacyToken, ns, mi.Name, "unbound token after rotation")
	revoked(t, cfg.Elemental.SystemAgent.Token, ns, mi.Name, "new token after rotation")
	now, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, sa.Name, metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotEqual(t, sa.UID, now.UID, "the older version's ServiceAccount was replaced")
	assert.Equal(t, "1", now.Annotations[elementalv1.CredentialRotationAnnotation])
	cfg, err = register(t, mr, host{id: id, update: true})
	require.NoError(t, err)
	readsPlan(t, cfg.Elemental.SystemAgent.Token, ns, mi.Name)

	// A second rotation replaces it again.
	annotate(t, ns, mi.Name, elementalv1.RotateCredentialAnnotation, "2")
	revoked(t, cfg.Elemental.SystemAgent.Token, ns, mi.Name, "token after the second rotation")
	eventually(t, 10*time.Second, func() error {
		again, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, sa.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if again.UID == now.UID || again.Annotations[elementalv1.CredentialRotationAnnotation] != "2" {
			return fmt.Errorf("ServiceAccount not replaced for the second rotation")
		}
		return nil
	})
}

// Replicas starting together race to create the identity key: every one
// ends up with the same key, and another installation's key labels the same
// host differently.
func TestIdentityKeyRace(t *testing.T) {
	ctx := context.Background()
	keys := func(ns string) []byte {
		const replicas = 4
		got := make([][]byte, replicas)
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k, err := server.LoadIdentityKey(ctx, env.Client, ns)
				assert.NoError(t, err)
				got[i] = k
			}()
		}
		wg.Wait()
		for i := 1; i < replicas; i++ {
			require.Equal(t, got[0], got[i], "replica %d has another key", i)
		}
		return got[0]
	}
	a, b := keys(newNamespace(t)), keys(newNamespace(t))
	assert.NotEqual(t, a, b)
	hash := hashOf("52:54:00:00:00:01")
	assert.NotEqual(t, server.IdentityLabel(a, false, hash), server.IdentityLabel(b, false, hash))
}

// A known host's re-registration repairs the access an admin (or a bad
// cleanup) removed, reading first and creating only what is missing; a Role
// of that name that is someone else's is never taken over.
func TestReRegistrationRepairsAccess(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "repair", macRegistration())
	const id = "52:54:00:7e:9a:01"
	cfg, err := register(t, mr, host{id: id})
	require.NoError(t, err)
	name := cfg.Elemental.SystemAgent.SecretName
	readsPlan(t, cfg.Elemental.SystemAgent.Token, ns, name)
	mi, err := inventories.Get(ns, name, metav1.GetOptions{})
	require.NoError(t, err)

	rbac := env.Client.RbacV1()
	require.NoError(t, rbac.Roles(ns).Delete(ctx, credentials.Name(name), metav1.DeleteOptions{}))
	require.NoError(t, rbac.RoleBindings(ns).Delete(ctx, credentials.Name(name), metav1.DeleteOptions{}))
	before := writes.Snapshot()
	eventually(t, 20*time.Second, func() error {
		// The server reads from the API server's watch cache: a read that
		// still shows the deleted objects repairs at the next registration.
		cfg, err = register(t, mr, host{id: id, update: true})
		if err != nil {
			return err
		}
		_, err := agentClient(t, cfg.Elemental.SystemAgent.Token).CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	d := diff(before, writes.Snapshot())
	assert.Zero(t, d["POST serviceaccounts"], "the ServiceAccount was there: read, not created again")
	assert.Positive(t, d["POST roles"])
	assert.Positive(t, d["POST rolebindings"])
	role, err := rbac.Roles(ns).Get(ctx, credentials.Name(name), metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, mi.UID, metav1.GetControllerOf(role).UID)

	// Someone else's Role of that name: the host is told, the Role stays.
	require.NoError(t, rbac.Roles(ns).Delete(ctx, credentials.Name(name), metav1.DeleteOptions{}))
	foreign := role.DeepCopy()
	foreign.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: role.Name}
	_, err = rbac.Roles(ns).Create(ctx, foreign, metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, 20*time.Second, func() error {
		_, err := register(t, mr, host{id: id, update: true})
		if err == nil {
			return fmt.Errorf("re-registration succeeded over a foreign Role")
		}
		if !strings.Contains(err.Error(), "conflicts with an existing object") {
			return fmt.Errorf("want the conflict, got %v", err)
		}
		return nil
	})
	got, err := rbac.Roles(ns).Get(ctx, credentials.Name(name), metav1.GetOptions{})
	require.NoError(t, err)
	assert.Nil(t, metav1.GetControllerOf(got), "the foreign Role is left as it was")
}
