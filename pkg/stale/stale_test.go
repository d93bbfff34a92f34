package stale

import (
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestGuard(t *testing.T) {
	g := New()
	v1 := &metav1.ObjectMeta{UID: "u", ResourceVersion: "1"}
	v2 := &metav1.ObjectMeta{UID: "u", ResourceVersion: "2"}
	assert.False(t, g.Stale(v1), "nothing written yet")
	g.Wrote(v1)
	assert.True(t, g.Stale(v1), "the version we wrote over is stale")
	assert.True(t, g.Stale(v1), "and stays stale until a newer one is seen")
	assert.False(t, g.Stale(v2))
	assert.False(t, g.Stale(v1), "record cleared once the newer version was seen")
	g.Wrote(v2)
	g.Forget("u")
	assert.False(t, g.Stale(v2))
}

func TestOnce(t *testing.T) {
	o := NewOnce()
	assert.True(t, o.First("u", "a"))
	assert.False(t, o.First("u", "a"))
	assert.True(t, o.First("u", "b"))
	assert.True(t, o.First("v", "a"), "keys are per object")
	o.Forget("u")
	assert.True(t, o.First("u", "a"))
}
