package machineinventoryselector

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
)

// allocator is the one writer that decides which selector gets which
// inventory (docs/contracts.md, Cluster API). It works per namespace: every event that
// may change a pairing enqueues the namespace, and one pass pairs all waiting
// selectors with free inventories. Passes over the same namespace never run
// concurrently (workqueue semantics), so two selectors are never handed the
// same inventory and no per-selector race or herd exists.
type allocator struct {
	queue     workqueue.TypedRateLimitingInterface[string]
	writer    claimWriter
	invCache  elementalctl.MachineInventoryCache
	selectors elementalctl.MachineInventorySelectorCache
	// paused says whether a selector must be left alone (docs/contracts.md, Cluster API).
	paused func(mis *elementalv1.MachineInventorySelector) bool

	// onJudged is told when a pass leaves a selector without an inventory
	// (or its claim failed): its waiting status is news.
	onJudged func(mis *elementalv1.MachineInventorySelector)
	// onClaimed is told as soon as a claim of a pass is confirmed, before
	// the pass ends and before the cache shows it: the selector's bootstrap
	// plan can follow at once (claimedInventory gives the confirmed object).
	onClaimed func(mis *elementalv1.MachineInventorySelector)

	mu sync.Mutex
	// pending holds claims this process made that the cache may not show yet,
	// by selector UID and by inventory key, so a pass working from a stale
	// cache never hands a selector a second inventory or an inventory twice.
	pending      map[types.UID]pendingClaim
	pendingByInv map[string]types.UID
	// finalized holds, by selector UID, the resourceVersion a selector had
	// before our confirmed finalizer write: while the cache still shows it,
	// the selector may be claimed for (the finalizer precedes every claim).
	finalized map[types.UID]string
	// verdicts holds, per selector UID, why the last pass that considered it
	// left it waiting. A selector without a verdict is still in the
	// allocator's hands: a pass will claim for it or judge it.
	verdicts map[types.UID]Verdict
}

// Verdict is why an allocation pass left a selector without an inventory.
type Verdict struct {
	// ClaimErr is set when the claim write failed with an error other than
	// a conflict; empty means no free inventory matches.
	ClaimErr string
	// Spread is set when free inventories match but the selector's topology
	// spread holds it back (DoNotSchedule); it names the short domain.
	Spread string
	// Holds is the pool's claims per domain when Spread was decided: shown
	// with it, but not part of the verdict's identity (sameAs), since it
	// moves with every claim in the pool.
	Holds string
}

// sameAs: the two verdicts say the same thing to an admin; a verdict that
// only differs in Holds is no news and costs no status write.
func (v Verdict) sameAs(o Verdict) bool { return v.ClaimErr == o.ClaimErr && v.Spread == o.Spread }

// claimWriter is the one write the allocator makes: the claim, an Update
// guarded by the inventory's resourceVersion (the inventory controller's
// client; a fake in unit tests that reorders, delays and fails writes).
type claimWriter interface {
	Update(*elementalv1.MachineInventory) (*elementalv1.MachineInventory, error)
}

type pendingClaim struct {
	inventory string // namespace/name
	selector  string // name, in the inventory's namespace
	// confirmed is the inventory as the API server returned it from our
	// claim; read-only, shared with the selector handler.
	confirmed *elementalv1.MachineInventory
	// resourceVersion the inventory had before our claim: while the cache
	// still shows it, the cache is behind our write.
	fromRV string
}

func newAllocator(writer claimWriter, invCache elementalctl.MachineInventoryCache, selectors elementalctl.MachineInventorySelectorCache) *allocator {
	return &allocator{
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](10*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "inventory-allocator"}),
		writer:       writer,
		invCache:     invCache,
		selectors:    selectors,
		onJudged:     func(*elementalv1.MachineInventorySelector) {},
		onClaimed:    func(*elementalv1.MachineInventorySelector) {},
		pending:      map[types.UID]pendingClaim{},
		pendingByInv: map[string]types.UID{},
		finalized:    map[types.UID]string{},
		verdicts:     map[types.UID]Verdict{},
	}
}

// Enqueue asks for a pass over a namespace.
func (a *allocator) Enqueue(namespace string) { a.queue.Add(namespace) }

// Sync is part of wrangler's start.Starter; the caches it reads are synced by
// the controllers it shares them with.
func (a *allocator) Sync(context.Context) error { return nil }

// Start runs the workers until ctx ends.
func (a *allocator) Start(ctx context.Context, workers int) error {
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	for i := 0; i < workers; i++ {
		go func() {
			for a.next(ctx) {
			}
		}()
	}
	return nil
}

func (a *allocator) next(ctx context.Context) bool {
	ns, shutdown := a.queue.Get()
	if shutdown {
		return false
	}
	defer a.queue.Done(ns)
	if err := a.allocate(ctx, ns); err != nil {
		logrus.WithError(err).WithField("namespace", ns).Debug("allocation pass incomplete, retrying")
		a.queue.AddRateLimited(ns)
		return true
	}
	a.queue.Forget(ns)
	return true
}

// claimPending reports whether a claim of ours on behalf of selector uid is
// not visible in the cache yet (and forgets it once it is).
func (a *allocator) claimPending(uid types.UID) bool {
	_, ok := a.pendingClaimOf(uid)
	return ok
}

// pendingClaimOf returns the claim of ours on behalf of selector uid that
// the cache does not show yet, and forgets it once the cache does.
func (a *allocator) pendingClaimOf(uid types.UID) (pendingClaim, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.pending[uid]
	if !ok {
		return pendingClaim{}, false
	}
	ns, name := splitKey(p.inventory)
	if mi, err := a.invCache.Get(ns, name); err == nil && mi.ResourceVersion == p.fromRV {
		return p, true
	}
	delete(a.pending, uid)
	if a.pendingByInv[p.inventory] == uid {
		delete(a.pendingByInv, p.inventory)
	}
	return pendingClaim{}, false
}

// claimedInventory is the inventory a claim of ours confirmed for selector
// uid while the cache does not show that claim yet (nil otherwise), so the
// bootstrap plan need not wait for the watch. Read-only.
func (a *allocator) claimedInventory(uid types.UID) *elementalv1.MachineInventory {
	p, ok := a.pendingClaimOf(uid)
	if !ok {
		return nil
	}
	return p.confirmed
}

// owned returns the inventories that claim selector uid: the cache's owner
// index, else the claim of ours it does not show yet. The pending claim is
// read first: once the cache has caught up (and the claim is forgotten), the
// index read that follows shows it, whatever the interleaving.
func (a *allocator) owned(uid types.UID) ([]*elementalv1.MachineInventory, error) {
	confirmed := a.claimedInventory(uid)
	owned, err := a.invCache.GetByIndex(ByOwnerSelectorUID, string(uid))
	if err != nil || len(owned) > 0 || confirmed == nil {
		return owned, err
	}
	return []*elementalv1.MachineInventory{confirmed}, nil
}

// pendingSelector names the selector a claim of ours on inventory key
// (namespace/name) is for, while the cache does not show it yet.
func (a *allocator) pendingSelector(key string) (string, bool) {
	a.mu.Lock()
	uid, ok := a.pendingByInv[key]
	a.mu.Unlock()
	if !ok {
		return "", false
	}
	p, ok := a.pendingClaimOf(uid)
	return p.selector, ok
}

func (a *allocator) inventoryPending(mi *elementalv1.MachineInventory) bool {
	_, ok := a.pendingSelector(mi.Namespace + "/" + mi.Name)
	return ok
}

// recordClaim remembers a confirmed claim: mi is the inventory the claim was
// made from (its resourceVersion tells when the cache catches up), confirmed
// what the API server returned.
func (a *allocator) recordClaim(mis *elementalv1.MachineInventorySelector, mi, confirmed *elementalv1.MachineInventory) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := mi.Namespace + "/" + mi.Name
	a.pending[mis.UID] = pendingClaim{inventory: key, selector: mis.Name, confirmed: confirmed, fromRV: mi.ResourceVersion}
	a.pendingByInv[key] = mis.UID
	delete(a.verdicts, mis.UID)
}

// judge records why a selector was left waiting and, when that is news,
// tells the selector handler. A verdict that differs only in Holds is kept
// (the handler shows it when it next refreshes the message) but is no news.
func (a *allocator) judge(mis *elementalv1.MachineInventorySelector, v Verdict) {
	a.mu.Lock()
	old, had := a.verdicts[mis.UID]
	a.verdicts[mis.UID] = v
	a.mu.Unlock()
	if !had || !old.sameAs(v) {
		a.onJudged(mis)
	}
}

// verdict returns why the last pass left the selector waiting; false while
// no pass has judged it since it started waiting.
func (a *allocator) verdict(uid types.UID) (Verdict, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.verdicts[uid]
	return v, ok
}

// forget drops pending state of a selector that is going away.
func (a *allocator) forget(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.pending[uid]; ok {
		if a.pendingByInv[p.inventory] == uid {
			delete(a.pendingByInv, p.inventory)
		}
		delete(a.pending, uid)
	}
	delete(a.verdicts, uid)
	delete(a.finalized, uid)
}

// finalizerWritten records our confirmed finalizer write on a selector whose
// cached copy (mis, before the write) does not show it yet, so the next pass
// can claim for it without waiting for the watch.
func (a *allocator) finalizerWritten(mis *elementalv1.MachineInventorySelector) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.finalized[mis.UID] = mis.ResourceVersion
}

// hasFinalizer: the cached selector has our finalizer, or our write of it is
// confirmed and the cache is behind it.
func (a *allocator) hasFinalizer(mis *elementalv1.MachineInventorySelector) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	rv, ok := a.finalized[mis.UID]
	if ok && rv != mis.ResourceVersion {
		delete(a.finalized, mis.UID) // the cache caught up (or moved on)
		ok = false
	}
	return ok || inventory.SelectorHasFinalizer(mis)
}

type waitingSelector struct {
	mis      *elementalv1.MachineInventorySelector
	selector labels.Selector
	pool     string // poolOf(mis), for topology spread
}

// waiting lists the selectors of ns that need an inventory, oldest first.
func (a *allocator) waiting(ns string) ([]waitingSelector, error) {
	list, err := a.selectors.GetByIndex(WaitingByNamespace, ns)
	if err != nil {
		return nil, err
	}
	var out []waitingSelector
	for _, mis := range list {
		if !a.hasFinalizer(mis) || a.paused(mis) {
			continue
		}
		if _, ok := machineOwner(mis); !ok {
			continue
		}
		sel, err := mis.Spec.Selector.AsSelector()
		if err != nil {
			continue
		}
		// The pending claim first: it is forgotten once the cache shows the
		// claim, so the index read that follows sees it (the other order
		// misses both when the watch lands between the two reads).
		if a.claimPending(mis.UID) {
			continue
		}
		owned, err := a.invCache.GetByIndex(ByOwnerSelectorUID, string(mis.UID))
		if err != nil || len(owned) > 0 {
			continue
		}
		out = append(out, waitingSelector{mis: mis, selector: sel, pool: poolOf(mis)})
	}
	sort.Slice(out, func(i, j int) bool {
		ti, tj := out[i].mis.CreationTimestamp, out[j].mis.CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return out[i].mis.Name < out[j].mis.Name
	})
	return out, nil
}

// allocate runs one pass over a namespace: decide all pairs, then claim.
func (a *allocator) allocate(ctx context.Context, ns string) error {
	waiting, err := a.waiting(ns)
	if err != nil || len(waiting) == 0 {
		return err
	}
	freeList, err := a.invCache.GetByIndex(FreeByNamespace, ns)
	if err != nil {
		return err
	}
	var free []*elementalv1.MachineInventory
	for _, mi := range freeList {
		if a.inventoryPending(mi) {
			continue
		}
		// Read again after the pending check, as in waiting: a claim of ours
		// is forgotten once the cache shows it, so this read sees it; the
		// index's copy may predate it, and claiming from it would conflict.
		cur, err := a.invCache.Get(mi.Namespace, mi.Name)
		if err == nil && inventory.Free(cur) {
			free = append(free, cur)
		}
	}
	if len(free) == 0 {
		for _, w := range waiting {
			a.judge(w.mis, Verdict{})
		}
		return nil
	}
	sort.Slice(free, func(i, j int) bool { return free[i].Name < free[j].Name })
	pairs, held := decide(waiting, free, a.domainCounts(ns, waiting))

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		retry    bool
		parallel = make(chan struct{}, 16)
	)
	for _, p := range pairs {
		wg.Add(1)
		parallel <- struct{}{}
		go func(p pair) {
			defer wg.Done()
			defer func() { <-parallel }()
			if err := a.claim(p.mis, p.mi); err != nil {
				mu.Lock()
				retry = true
				mu.Unlock()
				if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
					logrus.WithError(err).WithFields(logrus.Fields{"selector": ns + "/" + p.mis.Name, "inventory": p.mi.Name}).Warn("claim failed")
					a.judge(p.mis, Verdict{ClaimErr: fmt.Sprintf("claiming inventory %s: %v", p.mi.Name, err)})
				}
			}
		}(p)
	}
	wg.Wait()
	if retry {
		// The inventories of failed claims may go to the others next pass:
		// judge nobody from this one.
		return errRetry
	}
	paired := make(map[types.UID]bool, len(pairs))
	for _, p := range pairs {
		paired[p.mis.UID] = true
	}
	for _, w := range waiting {
		if !paired[w.mis.UID] {
			h := held[w.mis.UID]
			a.judge(w.mis, Verdict{Spread: h.reason, Holds: h.holds})
		}
	}
	return nil
}

type pair struct {
	mis *elementalv1.MachineInventorySelector
	mi  *elementalv1.MachineInventory
}

// decide pairs waiting selectors (oldest first) with free inventories (sorted
// by name). Each selector walks its candidates from fnv32a(UID) mod n,
// wrapping, and takes the first one it matches that is still free:
// deterministic, spread so replacement passes rarely collide, and a pass
// over many waiting selectors and free inventories costs about one match per
// selector (and domain), not one per pair. A selector with a topology spread
// walks the candidates of each domain that way, then claims in the least
// used domain of its pool that has one (counts, by spreadKey, updated as
// this pass pairs), or is held with the reason returned by selector UID.
func decide(waiting []waitingSelector, free []*elementalv1.MachineInventory, counts domainCounts) ([]pair, map[types.UID]hold) {
	taken := make([]bool, len(free))
	// Bucket free inventories by label pair so a matchLabels selector only
	// looks at inventories that can match.
	buckets := map[string][]int{}
	for i, mi := range free {
		for k, v := range mi.Labels {
			buckets[k+"="+v] = append(buckets[k+"="+v], i)
		}
	}
	all := make([]int, len(free))
	for i := range all {
		all[i] = i
	}
	var pairs []pair
	held := map[types.UID]hold{}
	byDomain := map[string]domainMembers{} // every free inventory by domain, per topology key
	for _, w := range waiting {
		candidates := all
		for k, v := range w.mis.Spec.Selector.MatchLabels {
			if b := buckets[k+"="+v]; len(b) < len(candidates) {
				candidates = b
			}
		}
		ts := spreadOf(w.mis)
		if ts == nil {
			if i, ok := firstFree(w, candidates, taken, free); ok {
				taken[i] = true
				pairs = append(pairs, pair{mis: w.mis, mi: free[i]})
			}
			continue
		}
		// The domains where it matches a free inventory, the first such
		// inventory in each (walked as above), and the pool's choice among them.
		members := domainsOf(ts.TopologyKey, candidates, len(candidates) == len(free), free, byDomain)
		var domains []string
		first := map[string]int{}
		for _, d := range members.domains {
			if i, ok := firstFree(w, members.of[d], taken, free); ok {
				domains = append(domains, d)
				first[d] = i
			}
		}
		key := spreadKey(w.pool, ts.TopologyKey)
		if counts[key] == nil {
			if counts == nil {
				counts = domainCounts{}
			}
			counts[key] = map[string]int{}
		}
		pool := counts[key]
		for _, d := range domains {
			if _, known := pool[d]; !known {
				pool[d] = 0
			}
		}
		d, ok, why := spreadChoice(ts, pool, domains)
		if !ok {
			if why.reason != "" {
				held[w.mis.UID] = why
			}
			continue
		}
		i := first[d]
		taken[i] = true
		pool[d]++
		pairs = append(pairs, pair{mis: w.mis, mi: free[i]})
	}
	return pairs, held
}

// domainMembers are free inventories (indexes into free, ascending) by
// domain of one topology key; domains sorted.
type domainMembers struct {
	domains []string
	of      map[string][]int
}

// domainsOf groups candidates by domain of key. The grouping of all free
// inventories is built once per pass and topology key (byDomain); a
// narrower candidate list (a matchLabels bucket) is grouped on its own.
func domainsOf(key string, candidates []int, all bool, free []*elementalv1.MachineInventory, byDomain map[string]domainMembers) domainMembers {
	if all {
		if m, ok := byDomain[key]; ok {
			return m
		}
	}
	m := domainMembers{of: map[string][]int{}}
	for _, i := range candidates {
		d := domainOf(free[i].Labels, key)
		if _, seen := m.of[d]; !seen {
			m.domains = append(m.domains, d)
		}
		m.of[d] = append(m.of[d], i)
	}
	sort.Strings(m.domains)
	if all {
		byDomain[key] = m
	}
	return m
}

// firstFree walks candidates (indexes into free) from fnv32a(UID) mod n,
// wrapping, to the first one not taken that the selector matches.
func firstFree(w waitingSelector, candidates []int, taken []bool, free []*elementalv1.MachineInventory) (int, bool) {
	n := len(candidates)
	if n == 0 {
		return 0, false
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(w.mis.UID))
	start := int(h.Sum32() % uint32(n))
	for k := 0; k < n; k++ {
		i := candidates[(start+k)%n]
		if !taken[i] && w.selector.Matches(labels.Set(free[i].Labels)) {
			return i, true
		}
	}
	return 0, false
}

// claim is the one optimistic-locked write that pairs them: the inventory
// gains a controller ownerRef to the selector (other ownerRefs are kept).
// Once confirmed, the selector is handed on at once: its bootstrap plan does
// not wait for the rest of the pass nor for the watch.
func (a *allocator) claim(mis *elementalv1.MachineInventorySelector, mi *elementalv1.MachineInventory) error {
	claimed := inventory.ClaimBy(mi, mis)
	// The resourceVersion from the cache makes this a compare-and-swap: if the
	// inventory changed (claimed by anyone, deleted, released), it fails.
	confirmed, err := a.writer.Update(claimed)
	if err != nil {
		return err
	}
	a.recordClaim(mis, mi, confirmed)
	a.onClaimed(mis)
	return nil
}

type retryError struct{}

func (retryError) Error() string { return "some claims conflicted; retrying" }

var errRetry error = retryError{}
