package stale

import (
	"testing"
	"time"

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

func TestWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	w := NewWindow(5 * time.Second)
	w.now = func() time.Time { return now }
	assert.Equal(t, 5*time.Second, w.Wait("u", "a"), "first sighting starts the clock")
	now = now.Add(2 * time.Second)
	assert.Equal(t, 3*time.Second, w.Wait("u", "a"), "seeing it again does not")
	assert.Equal(t, 5*time.Second, w.Wait("v", "a"), "clocks are per object")
	now = now.Add(3 * time.Second)
	assert.Zero(t, w.Wait("u", "a"), "lasted the delay: write it")
	assert.Equal(t, 5*time.Second, w.Wait("u", "b"), "a new state starts a new clock")
	assert.Equal(t, 5*time.Second, w.Wait("u", "a"), "and so does re-entering an old one")
	w.Forget("u")
	now = now.Add(time.Hour)
	assert.Equal(t, 5*time.Second, w.Wait("u", "a"))
}

func TestChanges(t *testing.T) {
	var c Changes
	v1 := &metav1.ObjectMeta{ResourceVersion: "1"}
	v2 := &metav1.ObjectMeta{ResourceVersion: "2"}
	assert.True(t, c.Changed("ns/a", v1), "first run on a key")
	assert.False(t, c.Changed("ns/a", v1), "a re-run on the same version is no news")
	assert.True(t, c.Changed("ns/b", v1), "keys are separate")
	assert.True(t, c.Changed("ns/a", v2))
	var gone *metav1.ObjectMeta
	assert.True(t, c.Changed("ns/a", gone), "a removal is news")
	assert.True(t, c.Changed("ns/a", v2), "and forgets the key")
}
