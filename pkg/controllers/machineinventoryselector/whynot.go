package machineinventoryselector

import (
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
)

// whyNotRecheck is how long a waiting selector's why-not message is kept
// before it is computed again, and when a selector still waiting looks
// again: an inventory changing class (a claim elsewhere, a cordon) does not
// wake waiting selectors (a free one does), and recomputing on every
// handler run would rewrite the status of every waiting selector each time
// the pool moves, status write after status write during an adoption wave.
const whyNotRecheck = 30 * time.Second

type whyNotEntry struct {
	// key is what the message was computed for (whyNotKey): a new kind of
	// verdict is news and gets its detail at once.
	key string
	msg string
	at  time.Time
}

// whyNots remembers, per waiting selector UID, its last why-not message.
type whyNots struct {
	mu sync.Mutex
	m  map[types.UID]whyNotEntry
}

func newWhyNots() *whyNots { return &whyNots{m: map[types.UID]whyNotEntry{}} }

func (w *whyNots) forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, uid)
}

// whyNotKey names what a why-not detail explains: no free match, or one
// topology spread reason (the short domains).
func whyNotKey(v Verdict) string {
	if v.Spread != "" {
		return "spread:" + v.Spread
	}
	return "none"
}

// whyNotMessage returns the detail of the selector's waiting message for
// verdict v, computed again only once the last one is whyNotRecheck old or
// was computed for another kind of verdict: the inventories' classes when
// none is free, the pool's claims per domain (v.Holds, as of the last pass)
// when the topology spread holds it back. Both move with every claim in the
// namespace, and a waiting selector's status must not follow each of them.
func (h *handler) whyNotMessage(mis *elementalv1.MachineInventorySelector, v Verdict) string {
	now := time.Now()
	key := whyNotKey(v)
	h.whyNots.mu.Lock()
	e, ok := h.whyNots.m[mis.UID]
	h.whyNots.mu.Unlock()
	if ok && e.key == key && now.Sub(e.at) < whyNotRecheck {
		return e.msg
	}
	msg := v.Holds
	if v.Spread == "" {
		msg = h.whyNot(mis)
	}
	h.whyNots.mu.Lock()
	h.whyNots.m[mis.UID] = whyNotEntry{key: key, msg: msg, at: now}
	h.whyNots.mu.Unlock()
	return msg
}

// whyNot classifies the inventories the selector matches (inventory.Classify,
// the template's classes) into the waiting message. Read from the cache's
// namespace index; sorted by name so the quoted cordon reason, and so the
// message, is stable and an unchanged pool costs no status write.
func (h *handler) whyNot(mis *elementalv1.MachineInventorySelector) string {
	sel, err := mis.Spec.Selector.AsSelector()
	if err != nil {
		return ""
	}
	matching, err := h.inventories.Cache().List(mis.Namespace, sel)
	if err != nil {
		return ""
	}
	sort.Slice(matching, func(i, j int) bool { return matching[i].Name < matching[j].Name })
	var c inventory.Counts
	for _, mi := range matching {
		c.Add(mi)
	}
	if c.Matching() == 0 {
		return "no inventory in namespace " + mis.Namespace + " matches the selector"
	}
	return c.WhyNot()
}
