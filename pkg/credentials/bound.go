package credentials

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// Every agent token is bound (TokenRequest spec.boundObjectRef) to one Secret
// per inventory: the API server rejects the token once that Secret is gone or
// replaced (its UID is in the token), so deleting it revokes every token
// issued for the inventory at once, without touching the ServiceAccount. The
// Secret holds nothing secret: only the rotation it was created for.

// KeyRotation is the bound Secret's record of the rotate-credential
// annotation value it was created for.
const KeyRotation = "rotation"

// BoundSecretName is the name of mi's bound Secret.
func BoundSecretName(inventory string) string { return Name(inventory) + "-credential" }

// BoundSecret builds mi's bound Secret for the rotation currently asked for.
func BoundSecret(mi *elementalv1.MachineInventory) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            BoundSecretName(mi.Name),
			Namespace:       mi.Namespace,
			Labels:          map[string]string{elementalv1.ManagedLabel: "true"},
			OwnerReferences: []metav1.OwnerReference{plans.ControllerRef(mi)},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{KeyRotation: []byte(mi.Annotations[elementalv1.RotateCredentialAnnotation])},
	}
}

// RotationPending reports whether the admin asked for a rotation that the
// bound Secret (nil: none) has not recorded: it must be replaced.
func RotationPending(secret *corev1.Secret, mi *elementalv1.MachineInventory) bool {
	want := mi.Annotations[elementalv1.RotateCredentialAnnotation]
	if want == "" {
		return false
	}
	return secret == nil || string(secret.Data[KeyRotation]) != want
}

// EnsureBound returns mi's bound Secret, creating it when missing. With a
// rotation pending it is deleted and created again (revoking every token
// bound to it), and a ServiceAccount from before bound tokens is replaced
// too (revoking its unbound tokens); rotated says so. fresh (a new
// inventory) tries the create before any read. The registration server and
// the inventory controller both call it: every delete is guarded by the UID
// read, so two writers never remove each other's new Secret.
func EnsureBound(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory, fresh bool) (secret *corev1.Secret, rotated bool, err error) {
	secrets := k8s.CoreV1().Secrets(mi.Namespace)
	name := BoundSecretName(mi.Name)
	if fresh && !RotationPending(nil, mi) {
		return createBound(ctx, k8s, mi)
	}
	cur, err := secrets.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cur = nil
	case err != nil:
		return nil, false, fmt.Errorf("reading Secret %s/%s: %w", mi.Namespace, name, err)
	case !owned(cur, mi):
		return nil, false, fmt.Errorf("credential Secret %s/%s: %w", mi.Namespace, name, ErrConflict)
	}
	if !RotationPending(cur, mi) {
		if cur != nil {
			return cur, false, nil
		}
		return createBound(ctx, k8s, mi)
	}
	if err := replaceUnboundServiceAccount(ctx, k8s, mi); err != nil {
		return nil, false, err
	}
	if cur != nil {
		uid := cur.UID
		err := secrets.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		// NotFound or a failed precondition: another writer replaced it already.
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return nil, false, fmt.Errorf("deleting Secret %s/%s: %w", mi.Namespace, name, err)
		}
	}
	secret, _, err = createBound(ctx, k8s, mi)
	return secret, err == nil, err
}

// createBound creates the bound Secret; if it exists already it is used when
// it is ours (another writer created it).
func createBound(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory) (*corev1.Secret, bool, error) {
	secrets := k8s.CoreV1().Secrets(mi.Namespace)
	name := BoundSecretName(mi.Name)
	created, err := secrets.Create(ctx, BoundSecret(mi), metav1.CreateOptions{})
	if err == nil {
		return created, false, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, false, fmt.Errorf("creating Secret %s/%s: %w", mi.Namespace, name, err)
	}
	cur, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("reading Secret %s/%s: %w", mi.Namespace, name, err)
	}
	if !owned(cur, mi) {
		return nil, false, fmt.Errorf("credential Secret %s/%s: %w", mi.Namespace, name, ErrConflict)
	}
	return cur, false, nil
}

// replaceUnboundServiceAccount deletes and recreates mi's ServiceAccount when
// it lacks the bound-tokens mark: it was created by a version that issued
// unbound tokens, which only a new ServiceAccount UID revokes. The Role
// Binding names the account, so access is unchanged.
func replaceUnboundServiceAccount(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory) error {
	accounts := k8s.CoreV1().ServiceAccounts(mi.Namespace)
	name := Name(mi.Name)
	sa, err := accounts.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return EnsureServiceAccount(ctx, k8s, mi)
	case err != nil:
		return fmt.Errorf("reading ServiceAccount %s/%s: %w", mi.Namespace, name, err)
	case !owned(sa, mi):
		return fmt.Errorf("ServiceAccount %s/%s: %w", mi.Namespace, name, ErrConflict)
	case sa.Annotations[elementalv1.BoundTokensAnnotation] == "true":
		return nil
	}
	uid := sa.UID
	err = accounts.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting ServiceAccount %s/%s: %w", mi.Namespace, name, err)
	}
	return EnsureServiceAccount(ctx, k8s, mi)
}

// boundRef is the TokenRequest's binding to secret.
func boundRef(secret *corev1.Secret) *authenticationv1.BoundObjectReference {
	return &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret.Name, UID: secret.UID}
}
