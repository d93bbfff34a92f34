package plans

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// NewSecret is the initial plan Secret of an inventory: plan `{}`, owned by it.
func NewSecret(mi *elementalv1.MachineInventory) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            mi.Name,
			Namespace:       mi.Namespace,
			Labels:          map[string]string{elementalv1.ManagedLabel: "true"},
			Annotations:     newAnnotations(Empty, elementalv1.PlanTypeEmpty),
			OwnerReferences: []metav1.OwnerReference{ControllerRef(mi)},
		},
		Type: elementalv1.PlanSecretType,
		Data: map[string][]byte{KeyPlan: Empty},
	}
}

// OwnedBy reports whether secret is the plan Secret of mi (controller ownerRef
// with mi's UID); a same-named Secret of anyone else is never touched.
func OwnedBy(secret *corev1.Secret, mi *elementalv1.MachineInventory) bool {
	ref := metav1.GetControllerOf(secret)
	return ref != nil && ref.UID == mi.UID && ref.Kind == "MachineInventory"
}

// Patch is a merge patch that sets only data.plan, the plan.type annotation
// and the record of the plan (record.go): agent keys and other annotations
// are left as they are.
func Patch(plan []byte, planType string) []byte {
	annotations := recordAnnotations(plan)
	annotations[elementalv1.PlanTypeAnnotation] = planType
	return mustJSON(map[string]interface{}{
		"metadata": map[string]interface{}{"annotations": annotations},
		"data":     map[string][]byte{KeyPlan: plan},
	})
}

// newAnnotations are a new plan Secret's: its type and the record.
func newAnnotations(plan []byte, planType string) map[string]string {
	a := map[string]string{elementalv1.PlanTypeAnnotation: planType, elementalv1.PlanChecksumAnnotation: Checksum(plan)}
	if enc, ok := EncodeRecord(plan); ok {
		a[elementalv1.PlanRecordAnnotation] = enc
	}
	return a
}

// ControllerRef is the ownerRef every object owned by an inventory carries.
// No blockOwnerDeletion: it would need extra RBAC, and nothing relies on GC.
func ControllerRef(mi *elementalv1.MachineInventory) metav1.OwnerReference {
	controller := true
	return metav1.OwnerReference{
		APIVersion: elementalv1.SchemeGroupVersion.String(),
		Kind:       "MachineInventory",
		Name:       mi.Name,
		UID:        mi.UID,
		Controller: &controller,
	}
}
