package machineinventoryselector

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Runs of one key never overlap, other keys run alongside, and no entry
// outlives its holders.
func TestKeyLocks(t *testing.T) {
	var k keyLocks
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := k.lock("ns/a")
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(100 * time.Microsecond)
			inside.Add(-1)
			unlock()
		}()
	}
	other := k.lock("ns/b") // not blocked by ns/a
	other()
	wg.Wait()
	assert.EqualValues(t, 1, maxInside.Load())
	assert.Empty(t, k.m)
}

// A run asking to try again is retried, a bounded number of times.
func TestFastPathRetriesBounded(t *testing.T) {
	var calls atomic.Int32
	f := newFastPath(func(string) bool { calls.Add(1); return true })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, f.Start(ctx, 2))
	f.Add("ns/a")
	require.Eventually(t, func() bool { return calls.Load() == fastPathTries+1 }, 30*time.Second, time.Millisecond)
	time.Sleep(100 * time.Millisecond) // no assertion on time: a window for a stray retry, counted next
	assert.EqualValues(t, fastPathTries+1, calls.Load())

	var once atomic.Int32
	g := newFastPath(func(string) bool { return once.Add(1) == 1 })
	require.NoError(t, g.Start(ctx, 1))
	g.Add("ns/b")
	require.Eventually(t, func() bool { return once.Load() == 2 }, 30*time.Second, time.Millisecond)
}
