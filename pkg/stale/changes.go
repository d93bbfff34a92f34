package stale

import (
	"reflect"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Changes tells a mapping handler (one that only wakes other objects)
// whether its object changed since the handler last ran for that key.
// Wrangler runs every handler of a controller whenever anything enqueues
// the key, not only on watch events, so two mapping handlers that wake each
// other's objects (an inventory wakes its selector, the selector wakes its
// inventory) would otherwise keep each other running forever.
type Changes struct {
	seen sync.Map // key → resourceVersion at the last run
}

// Changed reports whether obj is a version the handler has not run on for
// key yet. A nil obj (the object left the cache) forgets the key and
// reports true: its removal is news too.
func (c *Changes) Changed(key string, obj metav1.Object) bool {
	if obj == nil || reflect.ValueOf(obj).IsNil() {
		c.seen.Delete(key)
		return true
	}
	rv := obj.GetResourceVersion()
	old, ok := c.seen.Swap(key, rv)
	return !ok || old.(string) != rv
}
