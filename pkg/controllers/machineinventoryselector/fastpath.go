package machineinventoryselector

import (
	"context"
	"sync"
	"time"

	"github.com/rancher/wrangler/v3/pkg/start"
	"k8s.io/client-go/util/workqueue"
)

// fastPath runs the selector handler for a selector whose claim was just
// confirmed, on workers of its own: in a burst (or at start-up) the selector
// queue holds every new selector's finalizer write, and a claimed selector's
// bootstrap plan must not wait behind them. It only accelerates: an error
// hands the selector back to the regular queue, which retries. Runs of one
// selector, from either queue, never overlap (keyLocks).
type fastPath struct {
	queue workqueue.TypedRateLimitingInterface[string]
	// run reports whether to try again shortly: the cached selector is
	// older than a write of ours, whose watch event is on its way.
	run func(key string) (again bool)
}

// fastPathTries bounds the retries of one key; past it, the regular queue
// (woken by the same watch event) does the work.
const fastPathTries = 8

func newFastPath(run func(key string) bool) *fastPath {
	return &fastPath{
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "selector-claimed"}),
		run: run,
	}
}

// Add asks for a run of the selector namespace/name.
func (f *fastPath) Add(key string) { f.queue.Add(key) }

// Sync is part of start.Starter; the caches it reads are the handler's.
func (f *fastPath) Sync(context.Context) error { return nil }

// Start runs the workers until ctx ends.
func (f *fastPath) Start(ctx context.Context, workers int) error {
	go func() {
		<-ctx.Done()
		f.queue.ShutDown()
	}()
	for i := 0; i < workers; i++ {
		go func() {
			for {
				key, shutdown := f.queue.Get()
				if shutdown {
					return
				}
				if f.run(key) && f.queue.NumRequeues(key) < fastPathTries {
					f.queue.AddRateLimited(key)
				} else {
					f.queue.Forget(key)
				}
				f.queue.Done(key)
			}
		}()
	}
	return nil
}

// starters starts several starters as one (Register returns one).
type starters []start.Starter

func (s starters) Sync(ctx context.Context) error {
	for _, st := range s {
		if err := st.Sync(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (s starters) Start(ctx context.Context, workers int) error {
	for _, st := range s {
		if err := st.Start(ctx, workers); err != nil {
			return err
		}
	}
	return nil
}

// keyLocks serialises handler runs per selector key across the regular
// queue and the fast path; an entry lives only while someone holds or waits
// for it.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int
}

func (k *keyLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
