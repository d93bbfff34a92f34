package machineregistration

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

func TestDesiredStatus(t *testing.T) {
	mr := &elementalv1.MachineRegistration{}
	mr.Status.Conditions = []metav1.Condition{{Type: "Legacy", Status: "True"}} // no reason: dropped
	st, r := desiredStatus(mr, "https://r", "", "tok", false)
	assert.Equal(t, "https://r/elemental/registration/tok", st.RegistrationURL)
	assert.Equal(t, elementalv1.ReasonSuccessfullyCreated, r.reason)
	assert.Len(t, st.Conditions, 1)
	assert.Empty(t, mr.Status.RegistrationToken, "input untouched")

	st, r = desiredStatus(mr, "", "Rancher's server-url Setting is empty", "tok", false)
	assert.Equal(t, elementalv1.ReasonMissingTokenOrServerURL, r.reason)
	assert.Equal(t, "no registration URL: Rancher's server-url Setting is empty", r.message)
	assert.Equal(t, "tok", st.RegistrationToken)
	assert.Empty(t, st.RegistrationURL)

	st, r = desiredStatus(mr, "https://r", "", "", true)
	assert.Equal(t, elementalv1.ReasonDuplicateToken, r.reason)
	assert.Empty(t, st.RegistrationToken)
	c := meta.FindStatusCondition(st.Conditions, elementalv1.ConditionReady)
	assert.Equal(t, metav1.ConditionFalse, c.Status)

	mr.Spec.Config.Elemental.Registration.Auth = "x"
	_, r = desiredStatus(mr, "https://r", "", "t", false)
	assert.Equal(t, elementalv1.ReasonInvalidConfiguration, r.reason)
}
