// Package credentials manages the per-inventory agent credentials: a
// ServiceAccount, a Role that reaches only the inventory's plan Secret, and a
// RoleBinding, all named elemental-agent-<inventory> and owned by it; tokens
// come from the TokenRequest API and are revoked by replacing the
// ServiceAccount (rotation.go; docs/contracts.md, Plan Secret). The registration server
// creates the ServiceAccount of a new host (EnsureServiceAccount) and issues
// its token; the inventory controller grants the access (EnsureAccess).
package credentials

import (
	"context"
	"errors"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// ErrConflict means an object with a credential's name exists and belongs to
// someone else: it is never touched.
var ErrConflict = errors.New("credential object exists and is not owned by this inventory")

// Name is the name of the ServiceAccount, Role and RoleBinding of an inventory.
func Name(inventory string) string { return "elemental-agent-" + inventory }

// Objects builds the three credential objects of mi.
func Objects(mi *elementalv1.MachineInventory) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	meta := metav1.ObjectMeta{
		Name:            Name(mi.Name),
		Namespace:       mi.Namespace,
		Labels:          map[string]string{elementalv1.ManagedLabel: "true"},
		OwnerReferences: []metav1.OwnerReference{plans.ControllerRef(mi)},
	}
	sa := &corev1.ServiceAccount{ObjectMeta: *meta.DeepCopy()}
	if want := rotationOf(mi); want != "" {
		// Created for this rotation: its tokens are the new ones (rotation.go).
		sa.Annotations = map[string]string{elementalv1.CredentialRotationAnnotation: want}
	}
	role := &rbacv1.Role{
		ObjectMeta: *meta.DeepCopy(),
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""},
			Resources: []string{"secrets"},
			// resourceNames also limits list and watch: the agent always uses
			// the field selector metadata.name=<secret>.
			ResourceNames: []string{mi.Name},
			Verbs:         []string{"get", "list", "watch", "update", "patch"},
		}},
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: *meta.DeepCopy(),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: Name(mi.Name)},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: Name(mi.Name), Namespace: mi.Namespace}},
	}
	return sa, role, rb
}

func owned(obj metav1.Object, mi *elementalv1.MachineInventory) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == mi.UID && ref.Kind == "MachineInventory"
}

// Ensure creates whatever of the three objects is missing. An existing object
// owned by mi is kept as is; one owned by anyone else yields ErrConflict.
func Ensure(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory) error {
	if err := EnsureServiceAccount(ctx, k8s, mi); err != nil {
		return err
	}
	return EnsureAccess(ctx, k8s, mi)
}

// Repair is Ensure for a known host, whose objects nearly always exist: each
// is read first, from the API server's watch cache (resourceVersion 0: no
// etcd round trip, and far cheaper than a create refused as AlreadyExists),
// and only a missing one is created. A read that lags a deletion only
// delays the repair to the next registration; one that lags a creation
// falls back to ensure's create-then-read.
func Repair(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory) error {
	name, ns := Name(mi.Name), mi.Namespace
	cached := metav1.GetOptions{ResourceVersion: "0"}
	check := func(kind string, obj metav1.Object, err error) (missing bool, _ error) {
		switch {
		case apierrors.IsNotFound(err):
			return true, nil
		case err != nil:
			return false, fmt.Errorf("reading %s %s/%s: %w", kind, ns, name, err)
		case !owned(obj, mi):
			return false, fmt.Errorf("%s %s/%s: %w", kind, ns, name, ErrConflict)
		}
		return false, nil
	}
	sa, err := k8s.CoreV1().ServiceAccounts(ns).Get(ctx, name, cached)
	if missing, err := check("ServiceAccount", sa, err); err != nil {
		return err
	} else if missing {
		if err := EnsureServiceAccount(ctx, k8s, mi); err != nil {
			return err
		}
	}
	role, err := k8s.RbacV1().Roles(ns).Get(ctx, name, cached)
	roleMissing, err := check("Role", role, err)
	if err != nil {
		return err
	}
	rb, err := k8s.RbacV1().RoleBindings(ns).Get(ctx, name, cached)
	rbMissing, err := check("RoleBinding", rb, err)
	if err != nil {
		return err
	}
	if roleMissing || rbMissing {
		return EnsureAccess(ctx, k8s, mi)
	}
	return nil
}

// EnsureServiceAccount creates mi's ServiceAccount unless it exists: all a
// token needs. The registration server calls it for new hosts; the Role and
// RoleBinding that give the token its access follow from the inventory
// controller (EnsureAccess), and the host's agent retries until they exist.
func EnsureServiceAccount(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory) error {
	sa, _, _ := Objects(mi)
	ns := mi.Namespace
	return ensure(mi, "ServiceAccount", func() error {
		_, err := k8s.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
		return err
	}, func() (metav1.Object, error) {
		return k8s.CoreV1().ServiceAccounts(ns).Get(ctx, sa.Name, metav1.GetOptions{})
	})
}

// EnsureAccess creates mi's Role and RoleBinding unless they exist.
func EnsureAccess(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory) error {
	_, role, rb := Objects(mi)
	ns := mi.Namespace
	err := ensure(mi, "Role", func() error {
		_, err := k8s.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{})
		return err
	}, func() (metav1.Object, error) { return k8s.RbacV1().Roles(ns).Get(ctx, role.Name, metav1.GetOptions{}) })
	if err != nil {
		return err
	}
	return ensure(mi, "RoleBinding", func() error {
		_, err := k8s.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{})
		return err
	}, func() (metav1.Object, error) {
		return k8s.RbacV1().RoleBindings(ns).Get(ctx, rb.Name, metav1.GetOptions{})
	})
}

// ensure creates one object; on AlreadyExists it reads it to tell ours
// (fine) from someone else's (ErrConflict).
func ensure(mi *elementalv1.MachineInventory, kind string, create func() error, get func() (metav1.Object, error)) error {
	err := create()
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s %s/%s: %w", kind, mi.Namespace, Name(mi.Name), err)
	}
	existing, err := get()
	if err != nil {
		return fmt.Errorf("reading %s %s/%s: %w", kind, mi.Namespace, Name(mi.Name), err)
	}
	if !owned(existing, mi) {
		return fmt.Errorf("%s %s/%s: %w", kind, mi.Namespace, Name(mi.Name), ErrConflict)
	}
	return nil
}

// Token issues a token for mi's ServiceAccount through the TokenRequest API:
// it stops working when that account is deleted or replaced (Rotate).
func Token(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory, ttl time.Duration) (string, time.Time, error) {
	seconds := int64(ttl / time.Second)
	tr, err := k8s.CoreV1().ServiceAccounts(mi.Namespace).CreateToken(ctx, Name(mi.Name), &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("requesting a token for %s/%s: %w", mi.Namespace, Name(mi.Name), err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

// Delete removes the three objects if they belong to mi (NotFound is fine).
// Deleting the ServiceAccount revokes every token issued for the inventory.
func Delete(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory) error {
	name, ns := Name(mi.Name), mi.Namespace
	if err := DeleteAccess(ctx, k8s, mi); err != nil {
		return err
	}
	if err := deleteOwned(mi, func() (metav1.Object, error) {
		return k8s.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	},
		func(o metav1.DeleteOptions) error { return k8s.CoreV1().ServiceAccounts(ns).Delete(ctx, name, o) }); err != nil {
		return fmt.Errorf("deleting ServiceAccount %s/%s: %w", ns, name, err)
	}
	return nil
}

// DeleteAccess removes the RoleBinding and Role if they belong to mi.
func DeleteAccess(ctx context.Context, k8s kubernetes.Interface, mi *elementalv1.MachineInventory) error {
	name, ns := Name(mi.Name), mi.Namespace
	if err := deleteOwned(mi, func() (metav1.Object, error) {
		return k8s.RbacV1().RoleBindings(ns).Get(ctx, name, metav1.GetOptions{})
	},
		func(o metav1.DeleteOptions) error { return k8s.RbacV1().RoleBindings(ns).Delete(ctx, name, o) }); err != nil {
		return fmt.Errorf("deleting RoleBinding %s/%s: %w", ns, name, err)
	}
	if err := deleteOwned(mi, func() (metav1.Object, error) { return k8s.RbacV1().Roles(ns).Get(ctx, name, metav1.GetOptions{}) },
		func(o metav1.DeleteOptions) error { return k8s.RbacV1().Roles(ns).Delete(ctx, name, o) }); err != nil {
		return fmt.Errorf("deleting Role %s/%s: %w", ns, name, err)
	}
	return nil
}

// deleteOwned deletes one object if it belongs to mi, guarded by its UID.
func deleteOwned(mi *elementalv1.MachineInventory, get func() (metav1.Object, error), remove func(metav1.DeleteOptions) error) error {
	obj, err := get()
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !owned(obj, mi) {
		return nil // someone else's: leave it
	}
	uid := obj.GetUID()
	err = remove(metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
