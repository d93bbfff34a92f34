package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
)

// identityInventory creates an inventory for a PLAIN identity the way an
// older version did (the unkeyed identity label, still matched).
func identityInventory(t *testing.T, ns, name, id string) *elementalv1.MachineInventory {
	t.Helper()
	hash := hashOf(id)
	mi, err := inventories.Create(&elementalv1.MachineInventory{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels:      map[string]string{elementalv1.IdentityHashLabel: hash[:32]},
			Annotations: map[string]string{elementalv1.ResettableAnnotation: "true"},
			Finalizers:  []string{elementalv1.MachineInventoryFinalizer},
		},
		Spec: elementalv1.MachineInventorySpec{MachineHash: hash},
	})
	require.NoError(t, err)
	return mi
}

// Two replicas created an inventory for the same host: the check after the
// create keeps the oldest, and the loser is deleted with everything the
// inventory controller gave it (its finalizer stays; no reset is waited for).
func TestUniquenessAfterCreate(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	const id = "52:54:00:99:99:01"
	older := identityInventory(t, ns, "a-older", id)
	winner, err := srv.UniqueWinner(older)
	require.NoError(t, err)
	assert.Equal(t, older.UID, winner.UID, "alone, it wins")

	newer := identityInventory(t, ns, "b-newer", id)
	// The inventory controller gives it its access and plan Secret.
	eventually(t, 10*time.Second, func() error {
		_, err := env.Client.RbacV1().RoleBindings(ns).Get(ctx, credentials.Name(newer.Name), metav1.GetOptions{})
		return err
	})
	winner, err = srv.UniqueWinner(newer)
	require.NoError(t, err)
	assert.Equal(t, older.UID, winner.UID, "the older inventory wins")
	eventually(t, 20*time.Second, func() error {
		for what, get := range map[string]func() error{
			"inventory": func() error { _, err := inventories.Get(ns, newer.Name, metav1.GetOptions{}); return err },
			"secret": func() error {
				_, err := env.Client.CoreV1().Secrets(ns).Get(ctx, newer.Name, metav1.GetOptions{})
				return err
			},
			"role": func() error {
				_, err := env.Client.RbacV1().Roles(ns).Get(ctx, credentials.Name(newer.Name), metav1.GetOptions{})
				return err
			},
			"rolebinding": func() error {
				_, err := env.Client.RbacV1().RoleBindings(ns).Get(ctx, credentials.Name(newer.Name), metav1.GetOptions{})
				return err
			},
		} {
			if err := get(); !isNotFound(err) {
				return fmt.Errorf("%s of the losing inventory still there: %v", what, err)
			}
		}
		return nil
	})
	_, err = inventories.Get(ns, older.Name, metav1.GetOptions{})
	require.NoError(t, err, "the winner stays")

	// The older one is in another namespace: refused, and ours is removed.
	other := newNamespace(t)
	const id2 = "52:54:00:99:99:02"
	identityInventory(t, other, "a-elsewhere", id2)
	late := identityInventory(t, ns, "b-late", id2)
	_, err = srv.UniqueWinner(late)
	require.EqualError(t, err, "machine identity is already registered in another namespace")
	eventually(t, 20*time.Second, func() error {
		if _, err := inventories.Get(ns, late.Name, metav1.GetOptions{}); !isNotFound(err) {
			return fmt.Errorf("losing inventory still there: %v", err)
		}
		return nil
	})
}

// During a rolling upgrade an older replica labels with the unkeyed hash and
// a newer one with the keyed value: the check after the create sees both.
func TestUniquenessAcrossLabelVersions(t *testing.T) {
	ns := newNamespace(t)
	const id = "52:54:00:99:99:03"
	hash := hashOf(id)
	mi, err := inventories.Create(&elementalv1.MachineInventory{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: "a-keyed",
			Labels:     map[string]string{elementalv1.IdentityHashLabel: keyedLabel(t, false, hash)},
			Finalizers: []string{elementalv1.MachineInventoryFinalizer},
		},
		Spec: elementalv1.MachineInventorySpec{MachineHash: hash},
	})
	require.NoError(t, err)
	newer := identityInventory(t, ns, "b-legacy", id)
	winner, err := srv.UniqueWinner(newer)
	require.NoError(t, err)
	assert.Equal(t, mi.UID, winner.UID, "the older, keyed inventory wins over the newer legacy one")
	eventually(t, 20*time.Second, func() error {
		if _, err := inventories.Get(ns, newer.Name, metav1.GetOptions{}); !isNotFound(err) {
			return fmt.Errorf("losing inventory still there: %v", err)
		}
		return nil
	})
}
