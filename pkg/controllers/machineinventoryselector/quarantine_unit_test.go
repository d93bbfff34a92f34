package machineinventoryselector

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

func TestBuildStatusAfterGivingUpAHost(t *testing.T) {
	mis := unitSelector()
	mis.Status.MachineInventoryRef = &corev1.LocalObjectReference{Name: "bad"}
	mis.Status.BootstrapPlanChecksum = "sum-for-bad"

	// Given up: ref and checksum go (the next host gets its own plan), and
	// the status says the old host is still being cleaned.
	st := buildStatus(mis, observation{releasedHosts: []string{"bad (quarantined: bootstrap failed 3 times: boom)"}})
	assert.Nil(t, st.MachineInventoryRef)
	assert.Empty(t, st.BootstrapPlanChecksum)
	c := meta.FindStatusCondition(st.Conditions, elementalv1.ConditionReleasedHostCleaned)
	if assert.NotNil(t, c) {
		assert.Equal(t, metav1.ConditionFalse, c.Status)
		assert.Equal(t, elementalv1.ReasonWaitingForCleanup, c.Reason)
		assert.Contains(t, c.Message, "bad (quarantined: bootstrap failed 3 times: boom)")
		assert.Contains(t, c.Message, "may still run Rancher's agent")
	}

	// A new host claimed while the old one is still cleaning: both shown.
	mis.Status = st
	good := unitInventory("good", nil)
	st = buildStatus(mis, observation{inventory: good, checksum: "sum-for-good", releasedHosts: []string{"bad (quarantined: x)"}})
	assert.Equal(t, "good", refName(st.MachineInventoryRef))
	assert.Equal(t, "sum-for-good", st.BootstrapPlanChecksum)
	assert.Equal(t, metav1.ConditionFalse, meta.FindStatusCondition(st.Conditions, elementalv1.ConditionReleasedHostCleaned).Status)

	// Cleaned: the condition turns true and stays.
	mis.Status = st
	st = buildStatus(mis, observation{inventory: good, checksum: "sum-for-good"})
	c = meta.FindStatusCondition(st.Conditions, elementalv1.ConditionReleasedHostCleaned)
	assert.Equal(t, metav1.ConditionTrue, c.Status)
	assert.Equal(t, elementalv1.ReasonCleanedUp, c.Reason)

	// A selector that never gave a host up has no such condition.
	st = buildStatus(unitSelector(), observation{inventory: good, checksum: "s"})
	assert.Nil(t, meta.FindStatusCondition(st.Conditions, elementalv1.ConditionReleasedHostCleaned))
}

func TestCleanupWatch(t *testing.T) {
	var c cleanupWatch
	mis := unitSelector()
	mi := unitInventory("bad", nil)
	mi.Annotations = map[string]string{elementalv1.ReleaseAnnotation: mis.Name}
	claimed := unitInventory("bad", nil)
	claimed.OwnerReferences = []metav1.OwnerReference{{APIVersion: elementalv1.SchemeGroupVersion.String(), Kind: "MachineInventorySelector", Name: mis.Name, UID: mis.UID, Controller: &[]bool{true}[0]}}
	c.watch(mi, mis)
	assert.Equal(t, []string{"ns/bad"}, c.of(mis))
	_, ok := c.done(claimed)
	assert.False(t, ok, "an older event, still claimed")
	_, ok = c.done(mi)
	assert.False(t, ok, "still releasing")
	mi.Annotations = nil
	name, ok := c.done(mi)
	assert.True(t, ok)
	assert.Equal(t, mis.Name, name)
	_, ok = c.done(mi)
	assert.False(t, ok, "told once")
}
