package machineinventory

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

// TestPlanTamperedCondition walks one inventory through tampering: the
// condition appears only once tampering is seen, stays while the restored
// plan is the current one, and clears when another plan is written.
func TestPlanTamperedCondition(t *testing.T) {
	bootstrap := []byte(`{"instructions":[]}`)
	sum := plans.Checksum(bootstrap)
	mi := &elementalv1.MachineInventory{}
	mi.Namespace, mi.Name = "ns", "mi"

	pass := func(obs observation) elementalv1.MachineInventoryStatus {
		st := buildStatus(mi, obs)
		mi.Status = st
		return st
	}

	st := pass(observation{secret: secretWith("bootstrap", bootstrap, nil)})
	assert.Equal(t, "", reason(st, elementalv1.ConditionPlanTampered), "never tampered: no condition")

	restored := &tamper{found: "ab" + sum[2:], recorded: sum, restored: true}
	st = pass(observation{secret: secretWith("bootstrap", bootstrap, nil), tamper: restored})
	assert.Equal(t, elementalv1.ReasonPlanRestored, reason(st, elementalv1.ConditionPlanTampered))
	assert.Contains(t, st.Conditions[len(st.Conditions)-1].Message+restored.message("ns/mi"), "restored")
	assert.NotEqual(t, elementalv1.ReasonPlanNotRestored, reason(st, elementalv1.ConditionReady), "a restored plan is not a Ready failure")

	st = pass(observation{secret: secretWith("bootstrap", bootstrap, nil)})
	assert.Equal(t, elementalv1.ReasonPlanRestored, reason(st, elementalv1.ConditionPlanTampered), "stays while the restored plan is current")

	st = pass(observation{secret: secretWith("empty", plans.Empty, nil)})
	assert.Equal(t, elementalv1.ReasonPlanIntact, reason(st, elementalv1.ConditionPlanTampered), "another plan written: cleared")
	st = pass(observation{secret: secretWith("empty", plans.Empty, nil)})
	assert.Equal(t, elementalv1.ReasonPlanIntact, reason(st, elementalv1.ConditionPlanTampered))

	lost := &tamper{found: sum, recorded: plans.EmptyChecksum, notRestored: errors.New("the record holds no copy of the plan")}
	st = pass(observation{secret: secretWith("empty", bootstrap, nil), tamper: lost})
	assert.Equal(t, elementalv1.ReasonPlanNotRestored, reason(st, elementalv1.ConditionPlanTampered))
	assert.Equal(t, elementalv1.ReasonPlanNotRestored, reason(st, elementalv1.ConditionReady))
	assert.Contains(t, lost.message("ns/mi"), "cannot be restored: the record holds no copy")
}
