package machineinventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// conflictRetry is how often an inventory whose Role or RoleBinding name is
// taken by someone else's object looks again (the admin may remove it).
const conflictRetry = time.Minute

// newPlanSecret gives an inventory whose plan Secret is not in our cache its
// agent access and then its plan Secret. The registration server only creates
// the inventory and its ServiceAccount (what the Config reply's token needs);
// the Role and RoleBinding that let that token read and update the plan
// Secret are created here, off the registration path, and the host's agent
// retries until they exist.
//
// Order matters, and inventory.AccessSteps is the one rule for it: the
// registration server follows it too when a known host re-registers (with
// repair, so a removed Role or RoleBinding comes back). The Role grants
// access by name, so it is only created once the name is known not to be
// someone else's Secret (foreign Secrets are never in our cache, hence the
// live read). The plan Secret comes last: an existing
// plan Secret of ours means the access was granted, so steady state costs no
// API call. A conflict (a foreign Secret, Role or RoleBinding of that name)
// grants nothing, is reported with a Warning Event, and is looked at again.
func (h *handler) newPlanSecret(mi *elementalv1.MachineInventory) (*corev1.Secret, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret, err := h.secrets.Get(mi.Namespace, mi.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		secret = nil
	case err != nil:
		return nil, false, err
	}
	// Ours (our cache is behind): nothing to do. Not ours: never grant
	// access to it. Missing: access, then the Secret.
	state := inventory.PlanSecretState(secret, mi)
	for _, step := range inventory.AccessSteps(state, false) {
		switch step {
		case inventory.GrantAccess:
			if err := credentials.EnsureAccess(ctx, h.k8s, mi); err != nil {
				if errors.Is(err, credentials.ErrConflict) {
					h.recorder.Event(mi, corev1.EventTypeWarning, "CredentialConflict", err.Error())
					h.inventories.EnqueueAfter(mi.Namespace, mi.Name, conflictRetry)
					return nil, false, nil
				}
				return nil, false, err
			}
		case inventory.CreatePlanSecret:
			return h.createPlanSecret(ctx, mi)
		}
	}
	return secret, state == inventory.SecretForeign, nil
}

// createPlanSecret creates the plan Secret once access is granted. Should
// the name have been taken since the read, a fresh read decides whether the
// access may stay.
func (h *handler) createPlanSecret(ctx context.Context, mi *elementalv1.MachineInventory) (*corev1.Secret, bool, error) {
	secret, err := h.secrets.Create(plans.NewSecret(mi))
	if err == nil {
		return secret, false, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, false, fmt.Errorf("creating plan secret: %w", err)
	}
	secret, err = h.secrets.Get(mi.Namespace, mi.Name, metav1.GetOptions{})
	if err != nil {
		return nil, false, err
	}
	if !inventory.MayHoldAccess(inventory.PlanSecretState(secret, mi)) {
		// Someone else's Secret appeared since the check: take back the access.
		if err := credentials.DeleteAccess(ctx, h.k8s, mi); err != nil {
			return nil, false, fmt.Errorf("revoking access to a foreign secret: %w", err)
		}
		return secret, true, nil
	}
	return secret, false, nil
}

// rotateCredential carries out a rotation asked for with the
// rotate-credential annotation: the ServiceAccount is replaced, which revokes
// every token issued before (pkg/credentials, rotation.go). The host gets a
// new token when it next registers; the registration server makes the same
// rotation itself should the host come first. Without the annotation, or
// once this rotation is known to be made, this costs nothing.
func (h *handler) rotateCredential(mi *elementalv1.MachineInventory) error {
	want := mi.Annotations[elementalv1.RotateCredentialAnnotation]
	if want == "" {
		return nil
	}
	if done, ok := h.rotations.Load(mi.UID); ok && done == want {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rotated, err := credentials.Rotate(ctx, h.k8s, mi)
	if err == nil {
		h.rotations.Store(mi.UID, want)
	}
	if errors.Is(err, credentials.ErrConflict) {
		h.recorder.Event(mi, corev1.EventTypeWarning, "CredentialConflict", err.Error())
		h.inventories.EnqueueAfter(mi.Namespace, mi.Name, conflictRetry)
		return nil
	}
	if err != nil {
		return err
	}
	if rotated {
		h.log(mi).Info("agent credential rotated")
		h.recorder.Event(mi, corev1.EventTypeNormal, "CredentialRotated", "every agent token issued before was revoked")
	}
	return nil
}
