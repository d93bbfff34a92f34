package machineregistration

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/conditions"
)

// URLPath is where the registration server answers, under the base URL.
const URLPath = "/elemental/registration/"

// ValidAuth lists the accepted spec.config.elemental.registration.auth values.
var ValidAuth = map[string]bool{"": true, "tpm": true, "mac": true, "sys-uuid": true}

// readiness is the verdict for one registration, computed without side effects.
type readiness struct {
	status  metav1.ConditionStatus
	reason  string
	message string
}

// desiredStatus builds the status of mr. base is the registration base URL
// ("" when unknown, problem says why), token is the token it should carry
// ("" to generate), duplicate says spec.token is taken by another registration.
func desiredStatus(mr *elementalv1.MachineRegistration, base, problem, token string, duplicate bool) (elementalv1.MachineRegistrationStatus, readiness) {
	st := *mr.Status.DeepCopy()
	st.Conditions = conditions.DropLegacy(st.Conditions)
	r := readiness{status: metav1.ConditionTrue, reason: elementalv1.ReasonSuccessfullyCreated}
	switch {
	case duplicate:
		r = readiness{metav1.ConditionFalse, elementalv1.ReasonDuplicateToken,
			"spec.token is already used by another MachineRegistration"}
	default:
		st.RegistrationToken = token
	}
	if base != "" && st.RegistrationToken != "" {
		st.RegistrationURL = base + URLPath + st.RegistrationToken
	}
	net := mr.Spec.Config.Network.Configurator
	switch {
	case duplicate:
	case base == "":
		r = readiness{metav1.ConditionFalse, elementalv1.ReasonMissingTokenOrServerURL, "no registration URL: " + problem}
	case !ValidAuth[mr.Spec.Config.Elemental.Registration.Auth]:
		r = readiness{metav1.ConditionFalse, elementalv1.ReasonInvalidConfiguration,
			fmt.Sprintf("unknown auth %q: use tpm, mac or sys-uuid", mr.Spec.Config.Elemental.Registration.Auth)}
	case net != "" && net != elementalv1.NetworkConfiguratorNone:
		r = readiness{metav1.ConditionFalse, elementalv1.ReasonUnsupportedNetworkConfig,
			fmt.Sprintf("network configurator %q is not supported yet", net)}
	}
	conditions.Set(&st.Conditions, elementalv1.ConditionReady, r.status, r.reason, r.message, mr.Generation)
	return st, r
}
