package crdwatch

import (
	"testing"

	"github.com/stretchr/testify/assert"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEstablished(t *testing.T) {
	crd := func(established apiextv1.ConditionStatus, versions map[string]bool, deleting bool) *apiextv1.CustomResourceDefinition {
		c := &apiextv1.CustomResourceDefinition{}
		for name, served := range versions {
			c.Spec.Versions = append(c.Spec.Versions, apiextv1.CustomResourceDefinitionVersion{Name: name, Served: served})
		}
		if established != "" {
			c.Status.Conditions = []apiextv1.CustomResourceDefinitionCondition{
				{Type: apiextv1.NamesAccepted, Status: apiextv1.ConditionTrue},
				{Type: apiextv1.Established, Status: established},
			}
		}
		if deleting {
			c.DeletionTimestamp = &metav1.Time{}
		}
		return c
	}
	for _, tc := range []struct {
		name string
		crd  *apiextv1.CustomResourceDefinition
		want bool
	}{
		{"missing", nil, false},
		{"not established yet", crd("", map[string]bool{"v1beta2": true}, false), false},
		{"established false", crd(apiextv1.ConditionFalse, map[string]bool{"v1beta2": true}, false), false},
		{"established, version served", crd(apiextv1.ConditionTrue, map[string]bool{"v1beta1": true, "v1beta2": true}, false), true},
		{"established, version not served", crd(apiextv1.ConditionTrue, map[string]bool{"v1beta2": false}, false), false},
		{"established, only another version", crd(apiextv1.ConditionTrue, map[string]bool{"v1beta1": true}, false), false},
		{"being deleted", crd(apiextv1.ConditionTrue, map[string]bool{"v1beta2": true}, true), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Established(tc.crd, "v1beta2"))
		})
	}
}

func TestCRDName(t *testing.T) {
	assert.Equal(t, "machines.cluster.x-k8s.io", ClusterAPI[0].CRDName())
	assert.Equal(t, "settings.management.cattle.io", RancherSettings[0].CRDName())
}
