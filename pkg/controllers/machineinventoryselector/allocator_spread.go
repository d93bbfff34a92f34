package machineinventoryselector

import (
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// domainCounts gathers, from the caches, what decide needs for the waiting
// selectors that have a topology spread: per pool and topology key, the
// domains of the inventories the selector matches (any state but deleting)
// and how many of them the pool's selectors hold, claims of ours not yet in
// the cache included. Selectors without a spread cost nothing here.
func (a *allocator) domainCounts(ns string, waiting []waitingSelector) domainCounts {
	var out domainCounts
	for _, w := range waiting {
		ts := spreadOf(w.mis)
		if ts == nil {
			continue
		}
		key := spreadKey(w.pool, ts.TopologyKey)
		if _, done := out[key]; done {
			continue
		}
		if out == nil {
			out = domainCounts{}
		}
		counts := map[string]int{}
		out[key] = counts
		if known, err := a.invCache.List(ns, w.selector); err == nil {
			for _, mi := range known {
				if mi.DeletionTimestamp == nil {
					counts[domainOf(mi.Labels, ts.TopologyKey)] += 0
				}
			}
		}
		for _, uid := range a.poolMembers(w) {
			// Pending first, as in waiting: the watch may land in between.
			inv, pending := a.pendingInventoryOf(uid)
			owned, _ := a.invCache.GetByIndex(ByOwnerSelectorUID, string(uid))
			for _, mi := range owned {
				counts[domainOf(mi.Labels, ts.TopologyKey)]++
			}
			if len(owned) > 0 {
				continue
			}
			if pending {
				invNS, name := splitKey(inv)
				if mi, err := a.invCache.Get(invNS, name); err == nil {
					counts[domainOf(mi.Labels, ts.TopologyKey)]++
				}
			}
		}
	}
	return out
}

// poolMembers are the UIDs of the selectors of w's pool (w's own when it
// was not cloned from a template).
func (a *allocator) poolMembers(w waitingSelector) []types.UID {
	if w.mis.Annotations[clonedFromNameAnnotation] == "" {
		return []types.UID{w.mis.UID}
	}
	list, err := a.selectors.GetByIndex(ByPool, w.pool)
	if err != nil {
		return []types.UID{w.mis.UID}
	}
	out := make([]types.UID, 0, len(list))
	for _, mis := range list {
		out = append(out, mis.UID)
	}
	return out
}

// pendingInventoryOf returns the inventory (namespace/name) of a claim made
// for the selector that the cache may not show yet.
func (a *allocator) pendingInventoryOf(uid types.UID) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.pending[uid]
	return p.inventory, ok
}

// indexPool maps a selector cloned from a template to its pool (poolOf).
func indexPool(mis *elementalv1.MachineInventorySelector) ([]string, error) {
	if mis.Annotations[clonedFromNameAnnotation] == "" {
		return nil, nil
	}
	return []string{poolOf(mis)}, nil
}
