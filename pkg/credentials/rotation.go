package credentials

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// Every agent token comes from the TokenRequest API and carries its
// ServiceAccount's UID: the API server rejects it once that account is gone
// or replaced. So the account is the revocation handle: rotating a host's
// credential replaces the account (same name, new UID), which revokes every
// token issued before at once, from this version or any older one. The Role
// and RoleBinding name the account, so access is unchanged. The account
// records the rotate-credential value it was created for, so a rotation is
// made once, and nothing is read or written while none is asked for.

// rotationOf is the rotation mi's admin asks for ("" for none).
func rotationOf(mi *elementalv1.MachineInventory) string {
	return mi.Annotations[elementalv1.RotateCredentialAnnotation]
}

// RotationPending reports whether the admin asked for a rotation that the
// ServiceAccount (nil: none) was not created for: it must be replaced.
func RotationPending(sa *corev1.ServiceAccount, mi *elementalv1.MachineInventory) bool {
	want := rotationOf(mi)
	if want == "" {
		return false
	}
	return sa == nil || sa.Annotations[elementalv1.CredentialRotationAnnotation] != want
}

// Rotate carries out a pending rotation: mi's ServiceAccount is deleted
// (guarded by its UID) and created again. rotated reports that this call
// revoked the earlier tokens. Without a rotation asked for, it costs
// nothing; with one already made, one read. The registration server and the
// inventory controller both call it: the UID guard keeps two writers from
// removing each other's new account.
func Rotate(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory) (rotated bool, err error) {
	if rotationOf(mi) == "" {
		return false, nil
	}
	accounts := k8s.CoreV1().ServiceAccounts(mi.Namespace)
	name := Name(mi.Name)
	sa, err := accounts.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		// No account, no valid token: a new one records the rotation.
		return false, EnsureServiceAccount(ctx, k8s, mi)
	case err != nil:
		return false, fmt.Errorf("reading ServiceAccount %s/%s: %w", mi.Namespace, name, err)
	case !owned(sa, mi):
		return false, fmt.Errorf("ServiceAccount %s/%s: %w", mi.Namespace, name, ErrConflict)
	case !RotationPending(sa, mi):
		return false, nil
	}
	uid := sa.UID
	err = accounts.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	switch {
	case err == nil:
		rotated = true
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		// Another writer replaced it already.
	default:
		return false, fmt.Errorf("deleting ServiceAccount %s/%s: %w", mi.Namespace, name, err)
	}
	if err := EnsureServiceAccount(ctx, k8s, mi); err != nil {
		return false, err
	}
	return rotated, nil
}
