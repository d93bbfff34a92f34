package machineregistration

import (
	"time"

	"github.com/rancher/wrangler/v3/pkg/randomtoken"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/conditions"
	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
)

// OnChange computes token, URL and Ready and writes status when it differs.
// mr comes from the cache: only the copy made by desiredStatus is changed.
func (h *handler) OnChange(_ string, mr *elementalv1.MachineRegistration) (*elementalv1.MachineRegistration, error) {
	if mr == nil {
		// A deleted registration may free a token others were refused.
		h.enqueueAll(isDuplicate)
		return nil, nil
	}
	if mr.DeletionTimestamp != nil {
		return mr, nil
	}
	token, duplicate, err := h.token(mr)
	if err != nil {
		return mr, err
	}
	ep := endpoints.Resolve(h.opts.Endpoints, endpoints.FromReader(h.settingsReader()), "")
	st, r := desiredStatus(mr, ep.RegistrationBase, ep.RegistrationProblem, token, duplicate)
	if apiequality.Semantic.DeepEqual(st, mr.Status) {
		return mr, nil
	}
	before := mr.Status.Conditions
	out := mr.DeepCopy()
	out.Status = st
	out, err = h.registrations.UpdateStatus(out)
	if err != nil {
		return mr, err
	}
	log := logrus.WithFields(logrus.Fields{"machineregistration": mr.Namespace + "/" + mr.Name, "reason": r.reason})
	if conditions.Changed(before, st.Conditions, elementalv1.ConditionReady) {
		if r.status == "True" {
			log.Info("machineregistration ready")
			// Events are widely readable: never put the token (or the URL holding it) there.
			h.recorder.Event(out, corev1.EventTypeNormal, "Ready", "hosts can register")
		} else {
			log.WithField("message", r.message).Warn("machineregistration not ready")
			h.recorder.Event(out, corev1.EventTypeWarning, r.reason, r.message)
		}
	}
	// Registrations refused for our spec.token may be free now that we moved;
	// look again once our cache shows the move (it may lag this write).
	if mr.Status.RegistrationToken != "" && mr.Status.RegistrationToken != st.RegistrationToken {
		h.enqueueAllAfter(isDuplicate, time.Second)
	}
	return out, nil
}

func isDuplicate(mr *elementalv1.MachineRegistration) bool {
	c := meta.FindStatusCondition(mr.Status.Conditions, elementalv1.ConditionReady)
	return c != nil && c.Reason == elementalv1.ReasonDuplicateToken
}

// token is the token mr should carry. spec.token must be unique: it is taken
// if another registration already serves it, or also asks for it and is older.
func (h *handler) token(mr *elementalv1.MachineRegistration) (string, bool, error) {
	if mr.Spec.Token != "" && mr.Status.RegistrationToken == mr.Spec.Token {
		return mr.Spec.Token, false, nil // already ours
	}
	if mr.Spec.Token == "" {
		if mr.Status.RegistrationToken != "" {
			return mr.Status.RegistrationToken, false, nil
		}
		t, err := randomtoken.Generate()
		return t, false, err
	}
	others, err := h.cache.GetByIndex(TokenIndex, mr.Spec.Token)
	if err != nil {
		return "", false, err
	}
	for _, o := range others {
		if o.UID == mr.UID {
			continue
		}
		if o.Status.RegistrationToken == mr.Spec.Token {
			return "", true, nil
		}
		if o.Spec.Token == mr.Spec.Token && o.Status.RegistrationToken != mr.Spec.Token && older(o, mr) {
			return "", true, nil
		}
	}
	return mr.Spec.Token, false, nil
}

func older(a, b *elementalv1.MachineRegistration) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}
