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

func boundWith(rotation string) *corev1.Secret {
	return &corev1.Secret{Data: map[string][]byte{KeyRotation: []byte(rotation)}}
}

func TestRotationPending(t *testing.T) {
	cases := []struct {
		name   string
		rotate string
		secret *corev1.Secret
		want   bool
	}{
		{name: "no annotation, no Secret", want: false},
		{name: "no annotation, a Secret", secret: boundWith(""), want: false},
		{name: "no annotation, a Secret of an earlier rotation", secret: boundWith("1"), want: false},
		{name: "annotation, no Secret", rotate: "1", want: true},
		{name: "annotation recorded", rotate: "1", secret: boundWith("1"), want: false},
		{name: "annotation changed", rotate: "2", secret: boundWith("1"), want: true},
		{name: "annotation on a Secret made before it", rotate: "1", secret: boundWith(""), want: true},
		{name: "Secret without the key", rotate: "1", secret: &corev1.Secret{}, want: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := RotationPending(tc.secret, inventoryWith(tc.rotate)); got != tc.want {
				t.Errorf("RotationPending = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBoundSecret(t *testing.T) {
	mi := inventoryWith("2026-11-28")
	s := BoundSecret(mi)
	if s.Name != "elemental-agent-host-credential" || s.Namespace != "ns" {
		t.Errorf("name = %s/%s", s.Namespace, s.Name)
	}
	if s.Type != corev1.SecretTypeOpaque || s.Labels[elementalv1.ManagedLabel] != "true" {
		t.Errorf("type %q, labels %v", s.Type, s.Labels)
	}
	if !owned(s, mi) {
		t.Error("not controlled by the inventory")
	}
	if RotationPending(s, mi) {
		t.Error("a Secret built for the current rotation leaves none pending")
	}
	if len(s.Data) != 1 || string(s.Data[KeyRotation]) != "2026-11-28" {
		t.Errorf("data = %v, want only the rotation", s.Data)
	}
	sa, role, _ := Objects(mi)
	if sa.Annotations[elementalv1.BoundTokensAnnotation] != "true" {
		t.Error("a new ServiceAccount is not marked bound-tokens")
	}
	if role.Annotations[elementalv1.BoundTokensAnnotation] != "" {
		t.Error("the mark leaked onto the Role")
	}
}
