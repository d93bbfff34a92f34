package inventory

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

func TestQuarantineReason(t *testing.T) {
	long := strings.Repeat("é", 400)
	cases := []struct {
		name, output, want string
		count              int
	}{
		{name: "no output", count: 3, want: "quarantined: bootstrap failed 3 times"},
		{name: "last non-empty line", count: 3, output: "bootstrap: starting\nno disk for rke2\n\n  \n", want: "quarantined: bootstrap failed 3 times: no disk for rke2"},
		{name: "control characters dropped", count: 5, output: "a\x1b[31mred\x00\r", want: "quarantined: bootstrap failed 5 times: a[31mred"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, QuarantineReason(tc.count, tc.output))
		})
	}
	got := QuarantineReason(3, "x\n"+long)
	assert.True(t, utf8.ValidString(got))
	assert.LessOrEqual(t, len(got), len("quarantined: bootstrap failed 3 times: ")+maxQuarantineLine+len("…"))
	assert.True(t, strings.HasSuffix(got, "…"))
}

func TestQuarantine(t *testing.T) {
	mi := &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: "m"}}
	assert.False(t, Quarantined(mi))
	assert.False(t, Cordoned(mi))
	q := Quarantine(mi, QuarantineReason(3, "boom"))
	assert.Nil(t, mi.Annotations, "the input is not modified")
	assert.True(t, Quarantined(q))
	assert.True(t, Cordoned(q))
	admin := Quarantine(mi, "rack 7 maintenance")
	assert.True(t, Cordoned(admin))
	assert.False(t, Quarantined(admin), "an admin's cordon is not a quarantine")
}
