package stale

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Window lets a handler leave an in-progress status unwritten until it has
// lasted a while: it remembers, per object UID, the in-progress state last
// seen and since when. A state that is left and later entered again starts
// a new clock.
type Window struct {
	mu    sync.Mutex
	delay time.Duration
	now   func() time.Time
	seen  map[types.UID]since
}

type since struct {
	key string
	at  time.Time
}

// NewWindow returns a Window that holds states back for delay.
func NewWindow(delay time.Duration) *Window {
	return &Window{delay: delay, now: time.Now, seen: map[types.UID]since{}}
}

// Wait reports how much longer state key of uid may stay unwritten: more
// than zero while it has been seen for less than the delay (the first
// sighting starts the clock), zero once it has lasted that long.
func (w *Window) Wait(uid types.UID, key string) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	s, ok := w.seen[uid]
	if !ok || s.key != key {
		s = since{key: key, at: now}
		w.seen[uid] = s
	}
	if left := s.at.Add(w.delay).Sub(now); left > 0 {
		return left
	}
	return 0
}

// Forget drops what is remembered of an object (deleted, or its state
// written).
func (w *Window) Forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.seen, uid)
}
