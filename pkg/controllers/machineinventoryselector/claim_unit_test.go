package machineinventoryselector

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rancher/wrangler/v3/pkg/generic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
)

// fakeWriter stands in for the API server behind the claim write: a
// compare-and-swap on resourceVersion, with random delays before and after
// the commit (so concurrent claims land and return in any order), random
// non-conflict failures, and writes by others that make claims conflict.
// The allocator's caches are real indexers that lag behind it: sync copies
// its objects into them, all or at random.
type fakeWriter struct {
	mu       sync.Mutex
	rng      *rand.Rand
	rv       int
	objs     map[string]*elementalv1.MachineInventory // by name
	failRate float64
	maxDelay time.Duration
	failName string                   // every write to this inventory fails
	block    map[string]chan struct{} // writes to these inventories wait
	writes   atomic.Int64
}

func (f *fakeWriter) delay() {
	f.mu.Lock()
	d := time.Duration(0)
	if f.maxDelay > 0 {
		d = time.Duration(f.rng.Int63n(int64(f.maxDelay)))
	}
	f.mu.Unlock()
	time.Sleep(d)
}

func (f *fakeWriter) Update(mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
	f.writes.Add(1)
	if ch := f.block[mi.Name]; ch != nil {
		<-ch
	}
	f.delay()
	out, err := f.commit(mi)
	f.delay() // the response may arrive after the watch event
	return out, err
}

func (f *fakeWriter) commit(mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gr := schema.GroupResource{Group: "elemental.cattle.io", Resource: "machineinventories"}
	cur, ok := f.objs[mi.Name]
	if !ok {
		return nil, apierrors.NewNotFound(gr, mi.Name)
	}
	if mi.Name == f.failName || f.rng.Float64() < f.failRate {
		return nil, apierrors.NewInternalError(fmt.Errorf("injected failure"))
	}
	if cur.ResourceVersion != mi.ResourceVersion {
		return nil, apierrors.NewConflict(gr, mi.Name, fmt.Errorf("resourceVersion %s, not %s", cur.ResourceVersion, mi.ResourceVersion))
	}
	f.rv++
	out := mi.DeepCopy()
	out.ResourceVersion = strconv.Itoa(f.rv)
	f.objs[mi.Name] = out
	return out.DeepCopy(), nil
}

// touch is a write by someone else (a label change): claims made from the
// older resourceVersion now conflict.
func (f *fakeWriter) touch(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	cur := f.objs[name].DeepCopy()
	cur.ResourceVersion = strconv.Itoa(f.rv)
	cur.Annotations = map[string]string{"touched": cur.ResourceVersion}
	f.objs[name] = cur
}

// sync brings the cache up to the writer's objects, each with probability p.
func (f *fakeWriter) sync(store cache.Indexer, p float64) {
	f.mu.Lock()
	var due []*elementalv1.MachineInventory
	for _, mi := range f.objs {
		if p >= 1 || f.rng.Float64() < p {
			due = append(due, mi.DeepCopy())
		}
	}
	f.mu.Unlock()
	for _, mi := range due {
		_ = store.Update(mi)
	}
}

// claimsOf counts, on the writer, the inventories each selector holds and
// the claim ownerRefs of each inventory.
func (f *fakeWriter) claimsOf() (bySelector map[types.UID][]string, refsPerInventory map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	bySelector, refsPerInventory = map[types.UID][]string{}, map[string]int{}
	for _, mi := range f.objs {
		for _, ref := range mi.OwnerReferences {
			if ref.Kind == inventory.SelectorKind && ref.Controller != nil && *ref.Controller {
				bySelector[ref.UID] = append(bySelector[ref.UID], mi.Name)
				refsPerInventory[mi.Name]++
			}
		}
	}
	return bySelector, refsPerInventory
}

type claimFixture struct {
	a         *allocator
	w         *fakeWriter
	invStore  cache.Indexer
	selStore  cache.Indexer
	selectors []*elementalv1.MachineInventorySelector
	claimed   atomic.Int64
	// handedOn: the selector handler, woken by onClaimed, could find the
	// claimed inventory (confirmed, or in the cache already).
	handedOn, lost atomic.Int64
}

func newClaimFixture(t *testing.T, seed int64, nInv, nSel int) *claimFixture {
	t.Helper()
	w := &fakeWriter{rng: rand.New(rand.NewSource(seed)), objs: map[string]*elementalv1.MachineInventory{}, block: map[string]chan struct{}{}}
	invStore := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	selStore := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	invCache := generic.NewCache[*elementalv1.MachineInventory](invStore, schema.GroupResource{Resource: "machineinventories"})
	selCache := generic.NewCache[*elementalv1.MachineInventorySelector](selStore, schema.GroupResource{Resource: "machineinventoryselectors"})
	invCache.AddIndexer(ByOwnerSelectorUID, indexOwnerSelectorUID)
	invCache.AddIndexer(FreeByNamespace, indexFree)
	selCache.AddIndexer(WaitingByNamespace, indexWaiting)

	for i := 0; i < nInv; i++ {
		mi := unitInventory(fmt.Sprintf("inv-%03d", i), map[string]string{"element": "fire"})
		w.rv++
		mi.ResourceVersion = strconv.Itoa(w.rv)
		mi.Status.Plan = &elementalv1.PlanStatus{Type: elementalv1.PlanTypeEmpty}
		mi.Status.Conditions = []metav1.Condition{{Type: elementalv1.ConditionReady, Status: metav1.ConditionTrue}}
		w.objs[mi.Name] = mi
		require.NoError(t, invStore.Add(mi.DeepCopy()))
	}
	fx := &claimFixture{w: w, invStore: invStore, selStore: selStore}
	controller := true
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < nSel; i++ {
		name := fmt.Sprintf("sel-%03d", i)
		mis := &elementalv1.MachineInventorySelector{ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: name, UID: types.UID(name + "-uid"),
			CreationTimestamp: metav1.NewTime(base.Add(time.Duration(i) * time.Second)),
			Finalizers:        []string{elementalv1.MachineInventorySelectorFinalizer},
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "Machine", Name: name, Controller: &controller}},
		}}
		mis.Spec.Selector = elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}}
		require.NoError(t, selStore.Add(mis))
		fx.selectors = append(fx.selectors, mis)
	}
	fx.a = newAllocator(w, invCache, selCache)
	fx.a.paused = func(*elementalv1.MachineInventorySelector) bool { return false }
	fx.a.onClaimed = func(mis *elementalv1.MachineInventorySelector) {
		fx.claimed.Add(1)
		// What the selector handler's repair does.
		owned, err := fx.a.owned(mis.UID)
		if err == nil && len(owned) == 1 {
			if c, ok := inventory.ClaimOf(owned[0]); ok && c.UID == mis.UID {
				fx.handedOn.Add(1)
				return
			}
		}
		fx.lost.Add(1)
	}
	return fx
}

// TestAllocatorClaimsUnderAnyInterleaving runs allocation passes against a
// writer that reorders, delays, fails and conflicts, with a cache that lags
// at random (also while a pass runs): no selector ever holds two
// inventories, no inventory carries two claims, every claimed selector is
// handed on with its inventory at once, and every selector is served in the
// end.
func TestAllocatorClaimsUnderAnyInterleaving(t *testing.T) {
	cases := []struct {
		name           string
		inventories    int
		selectors      int
		failRate       float64
		touchRate      float64 // per inventory and pass
		cacheSyncRate  float64 // per inventory and tick
		maxDelay       time.Duration
		enoughForEvery bool
	}{
		{name: "calm", inventories: 40, selectors: 40, cacheSyncRate: 1, enoughForEvery: true},
		{name: "reordered writes, lagging cache", inventories: 60, selectors: 50, cacheSyncRate: 0.2, maxDelay: 2 * time.Millisecond, enoughForEvery: true},
		{name: "failures and conflicts", inventories: 60, selectors: 60, failRate: 0.2, touchRate: 0.05, cacheSyncRate: 0.3, maxDelay: time.Millisecond, enoughForEvery: true},
		{name: "more selectors than inventories", inventories: 30, selectors: 50, failRate: 0.1, touchRate: 0.05, cacheSyncRate: 0.5, maxDelay: time.Millisecond},
		{name: "cache never catches up during passes", inventories: 30, selectors: 30, failRate: 0.1, cacheSyncRate: 0, maxDelay: time.Millisecond, enoughForEvery: true},
	}
	for _, tc := range cases {
		for seed := int64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", tc.name, seed), func(t *testing.T) {
				fx := newClaimFixture(t, seed, tc.inventories, tc.selectors)
				fx.w.failRate, fx.w.maxDelay = tc.failRate, tc.maxDelay
				rng := rand.New(rand.NewSource(seed))
				want := min(tc.inventories, tc.selectors)
				for pass := 0; pass < 200; pass++ {
					// The informer runs concurrently with the pass.
					stop := make(chan struct{})
					var wg sync.WaitGroup
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							select {
							case <-stop:
								return
							case <-time.After(200 * time.Microsecond):
								fx.w.sync(fx.invStore, tc.cacheSyncRate)
							}
						}
					}()
					err := fx.a.allocate(context.Background(), "ns")
					close(stop)
					wg.Wait()
					if err != nil {
						require.ErrorIs(t, err, errRetry)
					}
					for name := range fx.w.objs {
						if rng.Float64() < tc.touchRate {
							fx.w.touch(name)
						}
					}
					bySel, _ := fx.w.claimsOf()
					if len(bySel) == want && err == nil {
						break
					}
					if tc.cacheSyncRate == 0 && pass%10 == 9 {
						fx.w.sync(fx.invStore, 1) // the watch does arrive, late
					}
				}
				fx.w.sync(fx.invStore, 1)
				bySel, refs := fx.w.claimsOf()
				for uid, held := range bySel {
					assert.Len(t, held, 1, "selector %s holds %v", uid, held)
				}
				for name, n := range refs {
					assert.Equal(t, 1, n, "inventory %s claimed %d times", name, n)
				}
				assert.Equal(t, want, len(bySel), "selectors served")
				assert.Equal(t, int64(len(bySel)), fx.claimed.Load(), "one hand-on per claim")
				assert.Equal(t, fx.claimed.Load(), fx.handedOn.Load(), "every hand-on finds its inventory")
				assert.Zero(t, fx.lost.Load())
				// Once the cache shows everything, nothing is pending.
				for _, mis := range fx.selectors {
					assert.Nil(t, fx.a.claimedInventory(mis.UID))
				}
				if !tc.enoughForEvery {
					// The rest are judged: no inventory left.
					for _, mis := range fx.selectors {
						if _, ok := bySel[mis.UID]; ok {
							continue
						}
						v, judged := fx.a.verdict(mis.UID)
						assert.True(t, judged, "selector %s left waiting without a verdict", mis.Name)
						assert.Empty(t, v.ClaimErr)
					}
				}
			})
		}
	}
}

// TestAllocatorOneClaimDoesNotStallOthers: one claim write hangs, another
// always fails; every other selector of the pass is claimed and handed on
// while the hung write is still outstanding, and the failure is judged.
func TestAllocatorOneClaimDoesNotStallOthers(t *testing.T) {
	fx := newClaimFixture(t, 7, 40, 40)
	hang := make(chan struct{})
	fx.w.block["inv-003"] = hang
	fx.w.failName = "inv-011"
	done := make(chan error, 1)
	go func() { done <- fx.a.allocate(context.Background(), "ns") }()

	require.Eventually(t, func() bool { return fx.claimed.Load() == 38 }, 10*time.Second, time.Millisecond,
		"the other 38 claims go through while one hangs")
	select {
	case err := <-done:
		t.Fatalf("the pass ended (%v) while a claim was outstanding", err)
	default:
	}
	close(hang)
	require.ErrorIs(t, <-done, errRetry, "the failed claim asks for another pass")
	assert.EqualValues(t, 39, fx.claimed.Load())
	assert.Equal(t, fx.claimed.Load(), fx.handedOn.Load())

	var failed *elementalv1.MachineInventorySelector
	bySel, _ := fx.w.claimsOf()
	for _, mis := range fx.selectors {
		if _, ok := bySel[mis.UID]; !ok {
			failed = mis
		}
	}
	require.NotNil(t, failed)
	v, judged := fx.a.verdict(failed.UID)
	assert.True(t, judged)
	assert.Contains(t, v.ClaimErr, "inv-011")

	// The cache has not caught up: the next pass must not claim again for
	// the 39, and gives the last selector one of the free inventories.
	fx.w.failName = ""
	require.NoError(t, fx.a.allocate(context.Background(), "ns"))
	bySel, refs := fx.w.claimsOf()
	assert.Len(t, bySel, 40)
	for uid, held := range bySel {
		assert.Len(t, held, 1, "selector %s", uid)
	}
	for name, n := range refs {
		assert.Equal(t, 1, n, "inventory %s", name)
	}
}

// A selector whose finalizer write is confirmed but not in the cache yet is
// claimed for at once; one without a finalizer never is; once the cache
// moves on, the note is dropped and the cache decides.
func TestAllocatorClaimsRightAfterTheFinalizer(t *testing.T) {
	fx := newClaimFixture(t, 3, 5, 3)
	var noted *elementalv1.MachineInventorySelector
	for i, mis := range fx.selectors {
		bare := mis.DeepCopy()
		bare.Finalizers = nil
		bare.ResourceVersion = "10"
		require.NoError(t, fx.selStore.Update(bare))
		fx.selectors[i] = bare
	}
	noted = fx.selectors[1]
	fx.a.finalizerWritten(noted)

	require.NoError(t, fx.a.allocate(context.Background(), "ns"))
	bySel, _ := fx.w.claimsOf()
	assert.Len(t, bySel, 1)
	assert.Contains(t, bySel, noted.UID, "only the selector whose finalizer is confirmed")

	moved := noted.DeepCopy()
	moved.ResourceVersion = "11" // the cache caught up with something else
	assert.False(t, fx.a.hasFinalizer(moved))
	assert.False(t, fx.a.hasFinalizer(noted), "the note is gone")
}

// lateIndexer is an informer store whose watch event lands right after an
// owner-index read has been answered: the answer is the old one, the store
// is already new when the caller looks at anything else.
type lateIndexer struct {
	cache.Indexer
	afterOwnerRead func()
}

func (l *lateIndexer) ByIndex(name, value string) ([]interface{}, error) {
	out, err := l.Indexer.ByIndex(name, value)
	if name == ByOwnerSelectorUID && l.afterOwnerRead != nil {
		f := l.afterOwnerRead
		l.afterOwnerRead = nil
		f()
	}
	return out, err
}

// The CI-found interleaving: a confirmed claim not in the cache yet, and the
// watch event landing between the pass's owner-index read and its
// pending-claim check. The selector must not look unclaimed and get a second
// inventory.
func TestAllocatorWatchLandsBetweenIndexAndPending(t *testing.T) {
	fx := newClaimFixture(t, 5, 2, 1)
	require.NoError(t, fx.a.allocate(context.Background(), "ns"))
	bySel, _ := fx.w.claimsOf()
	require.Len(t, bySel, 1)

	late := &lateIndexer{Indexer: fx.invStore}
	late.afterOwnerRead = func() { fx.w.sync(fx.invStore, 1) }
	fx.a.invCache = generic.NewCache[*elementalv1.MachineInventory](late, schema.GroupResource{Resource: "machineinventories"})
	require.NoError(t, fx.a.allocate(context.Background(), "ns"))

	bySel, refs := fx.w.claimsOf()
	for uid, held := range bySel {
		assert.Len(t, held, 1, "selector %s holds %v", uid, held)
	}
	assert.Len(t, refs, 1, "one inventory claimed")
	assert.EqualValues(t, 1, fx.claimed.Load())
}
