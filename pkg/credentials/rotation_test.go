package credentials

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

func inventoryWith(rotate string) *elementalv1.MachineInventory {
	mi := &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "host", UID: "mi-uid"}}
	if rotate != "" {
		mi.Annotations = map[string]string{elementalv1.RotateCredentialAnnotation: rotate}
	}
	return mi
}

func accountFor(rotation string) *corev1.ServiceAccount {
	sa := &corev1.ServiceAccount{}
	if rotation != "" {
		sa.Annotations = map[string]string{elementalv1.CredentialRotationAnnotation: rotation}
	}
	return sa
}

func TestRotationPending(t *testing.T) {
	cases := []struct {
		name   string
		rotate string
		sa     *corev1.ServiceAccount
		want   bool
	}{
		{name: "no rotation asked, no account", sa: nil, want: false},
		{name: "no rotation asked, older account", sa: accountFor(""), want: false},
		{name: "no rotation asked, account of an earlier rotation", sa: accountFor("1"), want: false},
		{name: "first rotation, account from before", rotate: "1", sa: accountFor(""), want: true},
		{name: "rotation made", rotate: "1", sa: accountFor("1"), want: false},
		{name: "next rotation", rotate: "2", sa: accountFor("1"), want: true},
		{name: "rotation asked, no account", rotate: "1", sa: nil, want: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := RotationPending(tc.sa, inventoryWith(tc.rotate)); got != tc.want {
				t.Errorf("RotationPending = %v, want %v", got, tc.want)
			}
		})
	}
}

// An account created while a rotation is asked for records it (no second
// rotation), and only the account carries the record.
func TestObjectsRecordTheRotation(t *testing.T) {
	for _, rotate := range []string{"", "2026-11-28"} {
		mi := inventoryWith(rotate)
		sa, role, rb := Objects(mi)
		if RotationPending(sa, mi) {
			t.Errorf("rotate=%q: a new ServiceAccount is due for rotation", rotate)
		}
		if got := sa.Annotations[elementalv1.CredentialRotationAnnotation]; got != rotate {
			t.Errorf("rotate=%q: the ServiceAccount records %q", rotate, got)
		}
		if len(role.Annotations)+len(rb.Annotations) != 0 {
			t.Errorf("rotate=%q: Role or RoleBinding annotated", rotate)
		}
	}
}
