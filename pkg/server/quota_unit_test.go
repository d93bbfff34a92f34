package server

import (
	"testing"
	"time"

	"github.com/rancher/wrangler/v3/pkg/generic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// The CI-found interleaving: the watch brings a new inventory into the cache
// before its create's reply is back (before done). It is one creation, not
// two: the next host of a rate of 2 is still admitted.
func TestAdmitCountsAnInventoryOnceWhileItsCreateReplies(t *testing.T) {
	store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	inventories := generic.NewCache[*elementalv1.MachineInventory](store, schema.GroupResource{Resource: "machineinventories"})
	inventories.AddIndexer(registrationIndex, inventoryRegistration)
	s := &Server{inventories: inventories}
	mr := &elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "rate"}}
	mr.Spec.Limits = &elementalv1.RegistrationLimits{NewInventoriesPerMinute: ptr.To[int32](2)}
	now := time.Now()

	first, err := s.admit(mr, now, "host-a")
	require.NoError(t, err)
	require.NotNil(t, first)
	mi := &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ns", Name: "host-a", CreationTimestamp: metav1.NewTime(now),
		Annotations: map[string]string{elementalv1.MachineRegistrationAnnotation: "rate"},
	}}
	require.NoError(t, store.Add(mi)) // the watch, before the reply

	second, err := s.admit(mr, now, "host-b")
	require.NoError(t, err, "host-a counted once")
	first.done("host-a")
	second.done("")

	_, err = s.admit(mr, now, "host-c")
	require.NoError(t, err, "host-b's failed creation is not counted")
	_, err = s.admit(mr, now, "host-d")
	assert.ErrorContains(t, err, "admits at most 2 new hosts per minute")
}
