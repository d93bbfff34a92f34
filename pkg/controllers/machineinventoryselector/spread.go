package machineinventoryselector

import (
	"fmt"
	"sort"
	"strings"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// clonedFromNameAnnotation is set by Cluster API on every object it clones
// from a template (the template's name); with the cluster-name label it
// names the pool a selector belongs to.
const clonedFromNameAnnotation = "cluster.x-k8s.io/cloned-from-name"

// noDomain stands for "the inventory lacks the topology label": one domain of
// its own under ScheduleAnyway, never eligible under DoNotSchedule. It cannot
// collide with a label value (values never hold a NUL).
const noDomain = "\x00"

// maxDomainsInReason bounds how many domains a waiting message lists.
const maxDomainsInReason = 8

// poolOf names the pool a selector belongs to: namespace, CAPI cluster and
// the template it was cloned from. A selector not cloned from a template is
// a pool of its own.
func poolOf(mis *elementalv1.MachineInventorySelector) string {
	from := mis.Annotations[clonedFromNameAnnotation]
	if from == "" {
		return mis.Namespace + "/uid:" + string(mis.UID)
	}
	return mis.Namespace + "/" + mis.Labels[clusterNameLabel] + "/" + from
}

// spreadOf returns the selector's topology spread with defaults applied, nil
// when it has none.
func spreadOf(mis *elementalv1.MachineInventorySelector) *elementalv1.TopologySpread {
	ts := mis.Spec.TopologySpread
	if ts == nil || ts.TopologyKey == "" {
		return nil
	}
	out := *ts
	if out.MaxSkew < 1 {
		out.MaxSkew = 1
	}
	if out.WhenUnsatisfiable != elementalv1.ScheduleAnyway {
		out.WhenUnsatisfiable = elementalv1.DoNotSchedule
	}
	return &out
}

// domainOf is the inventory's domain for a topology key.
func domainOf(labels map[string]string, key string) string {
	if v, ok := labels[key]; ok {
		return v
	}
	return noDomain
}

// domainCounts is what decide knows of the pools, by spreadKey: for each
// domain, how many inventories the pool's selectors hold there. Every known
// domain has an entry (the values on the inventories the pool's selector
// matches, free or not), so a domain with nothing free still counts as the
// least used one.
type domainCounts map[string]map[string]int

// spreadKey identifies the counts of one pool for one topology key.
func spreadKey(pool, topologyKey string) string { return pool + "\x00" + topologyKey }

// hold is why the topology spread holds a selector back. reason names the
// short domains and stays the same while they do, so it is what a verdict
// compares; holds (the pool's claims per domain) moves with every claim
// elsewhere in the pool, so it is shown, refreshed slowly, never compared:
// a waiting selector's status is not rewritten as the pool fills.
type hold struct{ reason, holds string }

// spreadChoice picks the domain a selector claims from, given the domains
// that have a matching free inventory (candidates). ok=false means the
// selector waits, and the hold says for which domain.
func spreadChoice(ts *elementalv1.TopologySpread, counts map[string]int, candidates []string) (string, bool, hold) {
	doNotSchedule := ts.WhenUnsatisfiable != elementalv1.ScheduleAnyway
	// The least used domain, over every known domain that is eligible.
	min, haveMin := 0, false
	for d, n := range counts {
		if doNotSchedule && d == noDomain {
			continue
		}
		if !haveMin || n < min {
			min, haveMin = n, true
		}
	}
	var eligible []string
	for _, d := range candidates {
		if doNotSchedule && d == noDomain {
			continue
		}
		eligible = append(eligible, d)
	}
	if len(eligible) == 0 {
		if doNotSchedule && len(candidates) > 0 {
			return "", false, hold{reason: fmt.Sprintf("topology spread: no free matching inventory has the label %s (DoNotSchedule)", ts.TopologyKey)}
		}
		return "", false, hold{}
	}
	// Least used first; ties by name, so every pass decides the same.
	sort.Slice(eligible, func(i, j int) bool {
		ci, cj := counts[eligible[i]], counts[eligible[j]]
		if ci != cj {
			return ci < cj
		}
		return eligible[i] < eligible[j]
	})
	best := eligible[0]
	if !doNotSchedule || counts[best]+1-min <= int(ts.MaxSkew) {
		return best, true, hold{}
	}
	return "", false, shortReason(ts, counts, candidates, min)
}

// shortReason names the least used domains that have no free inventory
// (the reason) and the pool's claims per domain (holds), each bounded in
// length.
func shortReason(ts *elementalv1.TopologySpread, counts map[string]int, candidates []string, min int) hold {
	hasFree := map[string]bool{}
	for _, d := range candidates {
		hasFree[d] = true
	}
	domains := make([]string, 0, len(counts))
	for d := range counts {
		if d != noDomain {
			domains = append(domains, d)
		}
	}
	sort.Strings(domains)
	var short, held []string
	for _, d := range domains {
		if counts[d] == min && !hasFree[d] && len(short) < maxDomainsInReason {
			short = append(short, fmt.Sprintf("%s=%q", ts.TopologyKey, d))
		}
		if len(held) < maxDomainsInReason {
			held = append(held, fmt.Sprintf("%q: %d", d, counts[d]))
		}
	}
	if len(domains) > maxDomainsInReason {
		held = append(held, "…")
	}
	return hold{
		reason: fmt.Sprintf("topology spread (maxSkew %d, DoNotSchedule): waiting for a free inventory in %s", ts.MaxSkew, strings.Join(short, " or ")),
		holds:  "the pool holds {" + strings.Join(held, ", ") + "}",
	}
}
