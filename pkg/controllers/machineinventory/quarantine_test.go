package machineinventory

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
)

func TestQuarantineReason(t *testing.T) {
	boot := []byte(`{"instructions":[{"name":"bootstrap","command":"false"}]}`)
	sum := plans.Checksum(boot)
	failed := func(count string) *corev1.Secret {
		return secretWith(elementalv1.PlanTypeBootstrap, boot, map[string]string{
			"failed-checksum": sum, "failure-count": count,
			"failed-output": string(GzipOutput(t, map[string]string{"bootstrap": "downloading rke2\nno disk for rke2\n"})),
		})
	}
	mi := func(annotations map[string]string, deleting bool) *elementalv1.MachineInventory {
		m := &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: "m", Annotations: annotations}}
		if deleting {
			now := metav1.NewTime(time.Now())
			m.DeletionTimestamp = &now
		}
		return m
	}
	cases := []struct {
		name   string
		mi     *elementalv1.MachineInventory
		secret *corev1.Secret
		after  int
		want   string // "" means not quarantined
	}{
		{name: "failed as often as allowed", mi: mi(nil, false), secret: failed("3"), after: 3,
			want: "quarantined: bootstrap failed 3 times: no disk for rke2"},
		{name: "failed more often", mi: mi(nil, false), secret: failed("7"), after: 3, want: "quarantined: bootstrap failed 7 times: no disk for rke2"},
		{name: "not yet", mi: mi(nil, false), secret: failed("2"), after: 3},
		{name: "disabled", mi: mi(nil, false), secret: failed("9"), after: 0},
		{name: "an admin's cordon is kept", mi: mi(map[string]string{elementalv1.CordonedAnnotation: "rack 7"}, false), secret: failed("9"), after: 3},
		{name: "already quarantined", mi: mi(map[string]string{elementalv1.CordonedAnnotation: "quarantined: x"}, false), secret: failed("9"), after: 3},
		{name: "deleting", mi: mi(nil, true), secret: failed("9"), after: 3},
		{name: "releasing", mi: mi(map[string]string{elementalv1.ReleaseAnnotation: "s"}, false), secret: failed("9"), after: 3},
		{name: "no plan secret", mi: mi(nil, false), after: 3},
		{name: "a failing release plan is not a bootstrap failure", mi: mi(nil, false), after: 1,
			secret: secretWith(elementalv1.PlanTypeRelease, boot, map[string]string{"failed-checksum": sum, "failure-count": "5"})},
		{name: "an older bootstrap plan's failure does not count", mi: mi(nil, false), after: 1,
			secret: secretWith(elementalv1.PlanTypeBootstrap, boot, map[string]string{"failed-checksum": "other", "failure-count": "5"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := quarantineReason(tc.mi, tc.secret, tc.after)
			assert.Equal(t, tc.want != "", ok)
			assert.Equal(t, tc.want, got)
		})
	}
}
