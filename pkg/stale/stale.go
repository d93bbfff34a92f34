// Package stale recognises informer-cache objects that are older than a write
// this process already made, so a handler does not write again from a stale
// copy (a guaranteed 409 conflict and a wasted request).
package stale

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Guard remembers, per object UID, the resourceVersion it last wrote over.
type Guard struct {
	mu      sync.Mutex
	written map[types.UID]string
}

// New returns an empty Guard.
func New() *Guard { return &Guard{written: map[types.UID]string{}} }

// Wrote records a successful write made from obj (the version it replaced).
func (g *Guard) Wrote(obj metav1.Object) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.written[obj.GetUID()] = obj.GetResourceVersion()
}

// Stale reports whether obj is the very version a write of ours replaced:
// the watch event for the newer version is on its way and will be handled.
// Seeing any other version clears the record.
func (g *Guard) Stale(obj metav1.Object) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	rv, ok := g.written[obj.GetUID()]
	if !ok {
		return false
	}
	if rv == obj.GetResourceVersion() {
		return true
	}
	delete(g.written, obj.GetUID())
	return false
}

// Forget drops the record of a deleted object.
func (g *Guard) Forget(uid types.UID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.written, uid)
}
