package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
)

// existing is the host's inventory in namespace (nil if none). A deleting
// inventory is an error the host is told about.
func (s *Server) existing(namespace string, id identity) (*elementalv1.MachineInventory, error) {
	mis, err := s.inventories.GetByIndex(identityIndex, id.indexKey())
	if err != nil {
		return nil, err
	}
	for _, mi := range mis {
		if mi.Namespace != namespace {
			continue
		}
		if mi.DeletionTimestamp != nil {
			return nil, fmt.Errorf("MachineInventory %s/%s is being deleted; registration refused", mi.Namespace, mi.Name)
		}
		return mi, nil
	}
	return nil, nil
}

// commit creates or updates the inventory, ensures its agent credential, and
// builds the Config reply. Errors are replyErrors: one line, no secrets.
func (s *Server) commit(c *conversation) (*protocol.Config, error) {
	unlock := s.locks.Lock(c.id.indexKey())
	defer unlock()
	// No API call outlives the host's patience (apiDeadline), nor holds the
	// identity's lock longer.
	ctx, cancel := context.WithDeadline(c.ctx, apiDeadline(time.Now(), c.conn.Deadline()))
	defer cancel()
	mr := c.mr

	ep := s.endpoints()
	if ep.AgentURL == "" {
		return nil, &replyError{ep.AgentProblem}
	}
	existing, err := s.existing(mr.Namespace, c.id)
	if err != nil {
		return nil, &replyError{err.Error()}
	}
	in := hostInput{data: c.data, labels: c.labels, annotations: c.annotations}
	labels, annotations, warns := buildMetadata(mr, in, existing)
	// New hosts get the keyed identity label; known ones are relabelled
	// from the unkeyed value older versions wrote (a merge patch, as below).
	labels[elementalv1.IdentityHashLabel] = identityLabel(s.identityKey, c.id)
	s.approvalAnnotations(ctx, mr, c, existing, annotations)
	// A new host's name first: spec.limits reserves the creation by name.
	var name string
	if existing == nil {
		var w *warning
		name, w, err = renderName(mr, in.data, uuid.NewString)
		if w != nil {
			warns = append(warns, *w)
		}
		if err != nil {
			err = &replyError{err.Error()}
		}
	}
	var mi *elementalv1.MachineInventory
	if err == nil {
		mi, err = s.writeInventory(ctx, c, existing, name, labels, annotations)
	}
	for _, w := range boundedWarnings(warns) {
		s.recorder.Event(mr, corev1.EventTypeWarning, w.reason, w.message)
	}
	if err != nil {
		return nil, err
	}

	if err := s.ensureCredential(ctx, mi, existing == nil); err != nil {
		return nil, err
	}
	// A rotation the inventory controller has not made yet is made here, so
	// the host never gets a token that is about to be revoked (pkg/credentials,
	// rotation.go). Without one asked for, this costs nothing.
	rotated, err := credentials.Rotate(ctx, s.k8s, mi)
	if err != nil {
		return nil, s.credentialReply(mi, err)
	}
	if rotated {
		s.recorder.Event(mi, corev1.EventTypeNormal, "CredentialRotated", "every agent token issued before was revoked")
	}
	token, expiry, err := credentials.Token(ctx, s.k8s, mi, s.opts.AgentTokenTTL)
	if err != nil {
		return nil, &replyError{"issuing the agent token failed"}
	}
	if time.Until(expiry) < 365*24*time.Hour {
		s.recorder.Eventf(mi, corev1.EventTypeWarning, "AgentTokenShortLived",
			"the agent token expires at %s; hosts cannot refresh it", expiry.UTC().Format(time.RFC3339))
	}
	if existing != nil {
		s.recorder.Eventf(mi, corev1.EventTypeNormal, "ReRegistered", "host %s re-registered through %s", c.remote, mr.Name)
		metrics.Registrations.WithLabelValues(registrationAuth(mr), "reregistered").Inc()
	} else {
		s.recorder.Eventf(mi, corev1.EventTypeNormal, "Registered", "host %s registered through %s", c.remote, mr.Name)
		metrics.Registrations.WithLabelValues(registrationAuth(mr), "registered").Inc()
	}
	return s.configReply(mr, mi, ep, token)
}

// writeInventory checks the bounds (a refused registration writes
// nothing), then creates the new host's inventory name or updates the
// known one.
func (s *Server) writeInventory(ctx context.Context, c *conversation, existing *elementalv1.MachineInventory, name string,
	labels, annotations map[string]string) (*elementalv1.MachineInventory, error) {
	res, err := s.bound(c.mr, existing, name, labels, annotations)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return s.updateInventory(ctx, existing, labels, annotations)
	}
	mi, err := s.createInventory(ctx, c.mr, name, c.id, labels, annotations)
	if err != nil {
		res.done("")
	} else {
		res.done(mi.Name)
	}
	return mi, err
}

func (s *Server) createInventory(ctx context.Context, mr *elementalv1.MachineRegistration, name string, id identity,
	labels, annotations map[string]string) (*elementalv1.MachineInventory, error) {
	newInventoryMetadata(mr, annotations)
	mi := &elementalv1.MachineInventory{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: mr.Namespace, Labels: labels, Annotations: annotations,
			// From the start: there is never a window without the finalizer.
			Finalizers: []string{elementalv1.MachineInventoryFinalizer},
		},
	}
	if id.tpm {
		mi.Spec.TPMHash = id.hash
	} else {
		mi.Spec.MachineHash = id.hash
	}
	created, err := s.miClient.Create(ctx, mi)
	if apierrors.IsAlreadyExists(err) {
		return nil, &replyError{fmt.Sprintf("MachineInventory name %s is already used in %s by another machine; make spec.machineName unique (e.g. add ${Random/Hex/6})", name, mr.Namespace)}
	}
	if err != nil {
		return nil, &replyError{"creating the MachineInventory failed"}
	}
	winner, err := s.uniqueWinner(ctx, created, id)
	if err != nil {
		return nil, &replyError{"verifying the machine identity failed"}
	}
	return winner, nil
}

// uniqueWinner closes the list-then-create race between replicas: of all
// inventories with this identity, the oldest wins; a losing creation is deleted.
func (s *Server) uniqueWinner(ctx context.Context, created *elementalv1.MachineInventory, id identity) (*elementalv1.MachineInventory, error) {
	// Inventories of older versions (or replicas not yet upgraded) carry the
	// unkeyed label: both values are matched.
	selector := fmt.Sprintf("%s in (%s,%s)", elementalv1.IdentityHashLabel, identityLabel(s.identityKey, id), legacyIdentityLabel(id))
	list, err := s.miClient.List(ctx, "", metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	var same []elementalv1.MachineInventory
	for _, mi := range list.Items {
		if (id.tpm && mi.Spec.TPMHash == id.hash) || (!id.tpm && mi.Spec.MachineHash == id.hash) {
			same = append(same, mi)
		}
	}
	if len(same) <= 1 {
		return created, nil
	}
	sort.Slice(same, func(i, j int) bool {
		a, b := same[i], same[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	winner := same[0]
	if winner.UID == created.UID {
		return created, nil
	}
	// Ours lost: delete it. Nothing was issued for it, but the inventory
	// controller may already have given it a Role, RoleBinding and plan
	// Secret, so its finalizer stays to remove them; there is no host to reset.
	// The clean-up must happen even when the commit's deadline is spent.
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	patch := []byte(`{"metadata":{"annotations":{"` + elementalv1.SkipResetAnnotation + `":"true"}}}`)
	_, _ = s.miClient.Patch(cleanup, created.Namespace, created.Name, types.MergePatchType, patch)
	_ = s.miClient.Delete(cleanup, created.Namespace, created.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &created.UID}})
	if winner.Namespace != created.Namespace {
		return nil, errors.New("machine identity is already registered in another namespace")
	}
	return &winner, nil
}

// updateInventory merges labels and annotations; keys are never removed and
// nothing is written when nothing changes.
func (s *Server) updateInventory(ctx context.Context, mi *elementalv1.MachineInventory, labels, annotations map[string]string) (*elementalv1.MachineInventory, error) {
	l, a := changed(labels, mi.Labels), changed(annotations, mi.Annotations)
	if len(l) == 0 && len(a) == 0 {
		return mi.DeepCopy(), nil
	}
	meta := map[string]interface{}{}
	if len(l) > 0 {
		meta["labels"] = l
	}
	if len(a) > 0 {
		meta["annotations"] = a
	}
	patch, err := json.Marshal(map[string]interface{}{"metadata": meta})
	if err != nil {
		return nil, err
	}
	out, err := s.miClient.Patch(ctx, mi.Namespace, mi.Name, types.MergePatchType, patch)
	if err != nil {
		return nil, &replyError{"updating the MachineInventory failed"}
	}
	return out, nil
}

// ensureCredential makes sure mi's agent credential can be issued a token.
// A new inventory needs only its ServiceAccount here: the inventory
// controller creates its Role, RoleBinding and plan Secret right after, off
// the registration path, and the host's agent retries until they exist
// (see docs/contracts.md, Plan Secret). A re-registration repairs whatever
// is missing, in the order of inventory.AccessSteps: the plan Secret's name
// is read live first, access (ServiceAccount, Role, RoleBinding) is granted
// only when that name is not someone else's Secret (read first, from the
// API server's watch cache: credentials.Repair), and a missing plan Secret
// is created last.
func (s *Server) ensureCredential(ctx context.Context, mi *elementalv1.MachineInventory, created bool) error {
	if created {
		return s.credentialReply(mi, credentials.EnsureServiceAccount(ctx, s.k8s, mi))
	}
	secret, err := s.k8s.CoreV1().Secrets(mi.Namespace).Get(ctx, mi.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		secret = nil
	case err != nil:
		return &replyError{"reading the plan Secret failed"}
	}
	state := inventory.PlanSecretState(secret, mi)
	if state == inventory.SecretForeign {
		return foreignSecret(mi)
	}
	for _, step := range inventory.AccessSteps(state, true) {
		switch step {
		case inventory.GrantAccess:
			if err := s.credentialReply(mi, credentials.Repair(ctx, s.k8s, mi)); err != nil {
				return err
			}
		case inventory.CreatePlanSecret:
			if err := s.createPlanSecret(ctx, mi); err != nil {
				return err
			}
		}
	}
	return nil
}

// credentialReply turns an error of pkg/credentials into the host's reply;
// a conflict is also a Warning Event on the inventory.
func (s *Server) credentialReply(mi *elementalv1.MachineInventory, err error) error {
	if errors.Is(err, credentials.ErrConflict) {
		s.recorder.Event(mi, corev1.EventTypeWarning, "CredentialConflict", err.Error())
		return &replyError{fmt.Sprintf("agent credential for MachineInventory %s/%s conflicts with an existing object", mi.Namespace, mi.Name)}
	}
	if err != nil {
		return &replyError{"creating the agent credential failed"}
	}
	return nil
}

// createPlanSecret creates the plan Secret (plan {}) once access is granted.
// Should the name have been taken since the read, a fresh read decides
// whether the access may stay; if not, it is revoked.
func (s *Server) createPlanSecret(ctx context.Context, mi *elementalv1.MachineInventory) error {
	secrets := s.k8s.CoreV1().Secrets(mi.Namespace)
	_, err := secrets.Create(ctx, plans.NewSecret(mi), metav1.CreateOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return &replyError{"creating the plan Secret failed"}
	}
	existing, err := secrets.Get(ctx, mi.Name, metav1.GetOptions{})
	if err != nil {
		return &replyError{"reading the plan Secret failed"}
	}
	if inventory.MayHoldAccess(inventory.PlanSecretState(existing, mi)) {
		return nil
	}
	if err := credentials.DeleteAccess(ctx, s.k8s, mi); err != nil {
		logrus.WithError(err).WithField("secret", mi.Namespace+"/"+mi.Name).Warn("revoking agent access to a Secret that is not the inventory's plan Secret failed")
	}
	return foreignSecret(mi)
}

// foreignSecret is the reply when the plan Secret's name is someone else's Secret.
func foreignSecret(mi *elementalv1.MachineInventory) error {
	return &replyError{fmt.Sprintf("Secret %s/%s exists and is not the plan Secret of this MachineInventory", mi.Namespace, mi.Name)}
}

// configReply builds the Config payload: install, reset and registration
// options, cloud-config, and the agent's URL, token and plan Secret (see
// docs/contracts.md, elemental-register).
func (s *Server) configReply(mr *elementalv1.MachineRegistration, mi *elementalv1.MachineInventory, ep endpoints.Endpoints, token string) (*protocol.Config, error) {
	cc, err := protocol.CloudConfig(mr.Spec.Config.CloudConfig)
	if err != nil {
		return nil, &replyError{"spec.config.cloud-config cannot be encoded"}
	}
	reg := s.registrationBlock(mr)
	return &protocol.Config{
		Elemental: protocol.Elemental{
			Install:      mr.Spec.Config.Elemental.Install,
			Reset:        mr.Spec.Config.Elemental.Reset,
			Registration: reg,
			SystemAgent: protocol.SystemAgent{
				StrictTLSMode:   ep.StrictTLS,
				URL:             ep.AgentURL,
				Token:           token,
				SecretName:      mi.Name,
				SecretNamespace: mi.Namespace,
			},
		},
		CloudConfig: cc,
	}, nil
}
