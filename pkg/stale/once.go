package stale

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// Once remembers, per object UID, which keys were already seen, so a handler
// can do something (defer an in-progress status write) only the first time.
type Once struct {
	mu   sync.Mutex
	seen map[types.UID]map[string]bool
}

// NewOnce returns an empty Once.
func NewOnce() *Once { return &Once{seen: map[types.UID]map[string]bool{}} }

// First reports whether key is new for uid, and remembers it.
func (o *Once) First(uid types.UID, key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := o.seen[uid]
	if keys == nil {
		keys = map[string]bool{}
		o.seen[uid] = keys
	}
	if keys[key] {
		return false
	}
	keys[key] = true
	return true
}

// Forget drops everything remembered for a deleted object.
func (o *Once) Forget(uid types.UID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.seen, uid)
}
