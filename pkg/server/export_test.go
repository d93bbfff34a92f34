package server

import (
	"context"
	"time"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// UniqueWinner runs the post-create uniqueness check on a PLAIN inventory.
func (s *Server) UniqueWinner(created *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
	return s.uniqueWinner(context.Background(), created, identity{hash: created.Spec.MachineHash})
}

// Limits are the runtime limits a test may narrow (zero fields keep theirs).
type Limits struct {
	MaxConnections, MaxPerSource int
	ConversationBytes            int64
	ConversationMessages         int
	ConversationTimeout          time.Duration
	// InventoryMaxLabels, InventoryMaxAnnotations, InventoryMaxMetadataBytes
	// narrow the metadata caps.
	InventoryMaxLabels, InventoryMaxAnnotations, InventoryMaxMetadataBytes int
}

// SetLimits narrows the limits until the returned func restores them.
func (s *Server) SetLimits(l Limits) (restore func()) {
	old := s.limits.Load()
	n := *old
	if l.MaxConnections != 0 {
		n.maxConnections = l.MaxConnections
	}
	if l.MaxPerSource != 0 {
		n.maxPerSource = l.MaxPerSource
	}
	if l.ConversationBytes != 0 {
		n.conversationBytes = l.ConversationBytes
	}
	if l.ConversationMessages != 0 {
		n.conversationMessages = l.ConversationMessages
	}
	if l.ConversationTimeout != 0 {
		n.conversationTimeout = l.ConversationTimeout
	}
	if l.InventoryMaxLabels != 0 {
		n.meta.labels = l.InventoryMaxLabels
	}
	if l.InventoryMaxAnnotations != 0 {
		n.meta.annotations = l.InventoryMaxAnnotations
	}
	if l.InventoryMaxMetadataBytes != 0 {
		n.meta.bytes = l.InventoryMaxMetadataBytes
	}
	s.limits.Store(&n)
	return func() { s.limits.Store(old) }
}

// OpenConnections is how many connections the limits count as open.
func (s *Server) OpenConnections() int {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	return s.conns.total
}

// IdentityLabel is the keyed identity-hash label of a TPM or PLAIN hash.
func IdentityLabel(key []byte, tpm bool, hash string) string {
	return identityLabel(key, identity{tpm: tpm, hash: hash})
}

// LoadIdentityKey reads or creates the installation's identity key.
var LoadIdentityKey = loadIdentityKey

// AdmitAt asks spec.limits whether a new host of mr would be admitted at
// the given time (from the server's cache), without keeping the reservation.
func (s *Server) AdmitAt(mr *elementalv1.MachineRegistration, at time.Time) (bool, string) {
	res, err := s.admit(mr, at, "")
	if err != nil {
		return false, err.Error()
	}
	res.done("")
	return true, ""
}
