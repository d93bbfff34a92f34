package server

import (
	"context"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// UniqueWinner runs the post-create uniqueness check on a PLAIN inventory.
func (s *Server) UniqueWinner(created *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
	return s.uniqueWinner(context.Background(), created, identity{hash: created.Spec.MachineHash})
}
