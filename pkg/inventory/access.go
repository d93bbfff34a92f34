package inventory

import (
	corev1 "k8s.io/api/core/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// SecretState is what a live read found under the name of an inventory's
// plan Secret (the inventory's own name, in its namespace).
type SecretState int

const (
	// SecretMissing: no Secret of that name.
	SecretMissing SecretState = iota
	// SecretOurs: the inventory's plan Secret (controlled by the inventory).
	SecretOurs
	// SecretForeign: someone else's Secret holds the name.
	SecretForeign
)

func (s SecretState) String() string {
	switch s {
	case SecretMissing:
		return "missing"
	case SecretOurs:
		return "ours"
	case SecretForeign:
		return "foreign"
	}
	return "unknown"
}

// PlanSecretState classifies a live read of the plan Secret's name; secret
// is nil when the read found nothing. Only a live read says SecretMissing:
// foreign Secrets are never in our cache.
func PlanSecretState(secret *corev1.Secret, mi *elementalv1.MachineInventory) SecretState {
	switch {
	case secret == nil:
		return SecretMissing
	case plans.OwnedBy(secret, mi):
		return SecretOurs
	default:
		return SecretForeign
	}
}

// Step is one write that gives a host's agent access to its plan Secret.
type Step int

const (
	// GrantAccess creates the Role and RoleBinding elemental-agent-<inventory>
	// that let the agent's token read and update the plan Secret.
	GrantAccess Step = iota + 1
	// CreatePlanSecret creates the plan Secret with the empty plan.
	CreatePlanSecret
)

func (s Step) String() string {
	switch s {
	case GrantAccess:
		return "grant-access"
	case CreatePlanSecret:
		return "create-plan-secret"
	}
	return "unknown"
}

// AccessSteps is the access-ordering rule: the writes still to make, in
// order, after a live read of the plan Secret's name found state.
//
//   - The Role grants access by name, so nothing is granted while the name
//     is someone else's Secret: SecretForeign gets no step (a conflict for
//     the caller to report).
//   - A missing Secret gets access first, then the Secret. An existing plan
//     Secret of ours therefore proves that access was granted, so the
//     steady state needs no write and no read beyond the cache.
//   - SecretOurs gets nothing, unless repair is asked for (a re-registering
//     host, whose Role or RoleBinding may have been removed): then access is
//     ensured again.
//
// Should the plan Secret's name be taken between the read and
// CreatePlanSecret, a fresh read decides with MayHoldAccess.
func AccessSteps(state SecretState, repair bool) []Step {
	switch state {
	case SecretMissing:
		return []Step{GrantAccess, CreatePlanSecret}
	case SecretOurs:
		if repair {
			return []Step{GrantAccess}
		}
	}
	return nil
}

// MayHoldAccess reports whether the agent may keep access granted by name
// once the name was found in state: not when a foreign Secret holds it (the
// access must then be revoked).
func MayHoldAccess(state SecretState) bool {
	return state != SecretForeign
}
