package machineinventoryselector

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

const zoneKey = "topology.kubernetes.io/zone"

// pooled is a waiting clone of template `pool` of cluster "c1" with a spread.
func pooled(t *testing.T, name, pool string, ts *elementalv1.TopologySpread) waitingSelector {
	w := waitingFor(t, name, elementalv1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}})
	w.mis.Annotations = map[string]string{clonedFromNameAnnotation: pool}
	w.mis.Labels = map[string]string{clusterNameLabel: "c1"}
	w.mis.Spec.TopologySpread = ts
	w.pool = poolOf(w.mis)
	return w
}

// zoned returns free inventories named <zone>-<i>, n per zone; zone "" means no zone label.
func zoned(n int, zones ...string) []*elementalv1.MachineInventory {
	var out []*elementalv1.MachineInventory
	for _, z := range zones {
		for i := 0; i < n; i++ {
			l := map[string]string{"role": "worker"}
			name := fmt.Sprintf("none-%d", i)
			if z != "" {
				l[zoneKey] = z
				name = fmt.Sprintf("%s-%d", z, i)
			}
			out = append(out, unitInventory(name, l))
		}
	}
	return out
}

func TestDecideTopologySpread(t *testing.T) {
	dns := &elementalv1.TopologySpread{TopologyKey: zoneKey, MaxSkew: 1, WhenUnsatisfiable: elementalv1.DoNotSchedule}
	anyway := &elementalv1.TopologySpread{TopologyKey: zoneKey, MaxSkew: 1, WhenUnsatisfiable: elementalv1.ScheduleAnyway}
	skew2 := &elementalv1.TopologySpread{TopologyKey: zoneKey, MaxSkew: 2}
	defaults := &elementalv1.TopologySpread{TopologyKey: zoneKey} // as an object written without the defaults
	pool := func(n int, prefix, tmpl string, ts *elementalv1.TopologySpread) []waitingSelector {
		var out []waitingSelector
		for i := 0; i < n; i++ {
			out = append(out, pooled(t, fmt.Sprintf("%s%d", prefix, i), tmpl, ts))
		}
		return out
	}
	key := func(tmpl string) string { return spreadKey("ns/c1/"+tmpl, zoneKey) }
	cases := []struct {
		name    string
		waiting []waitingSelector
		free    []*elementalv1.MachineInventory
		counts  domainCounts
		// want: claims per zone in this pass; held: selector → substring of its reason
		want map[string]int
		held map[string]string
	}{
		{
			name:    "six over three zones: 2/2/2",
			waiting: pool(6, "s", "workers", dns),
			free:    zoned(3, "a", "b", "c"),
			want:    map[string]int{"a": 2, "b": 2, "c": 2},
		},
		{
			name:    "scaled from 2/2/2 to nine: one more each",
			waiting: pool(3, "s", "workers", dns),
			free:    zoned(1, "a", "b", "c"),
			counts:  domainCounts{key("workers"): {"a": 2, "b": 2, "c": 2}},
			want:    map[string]int{"a": 1, "b": 1, "c": 1},
		},
		{
			name:    "the least used zone first, even with more free elsewhere",
			waiting: pool(2, "s", "workers", defaults),
			free:    zoned(3, "a", "b"),
			counts:  domainCounts{key("workers"): {"a": 3, "b": 1}},
			want:    map[string]int{"b": 2},
		},
		{
			name:    "DoNotSchedule waits for an empty zone and names it",
			waiting: pool(3, "s", "workers", dns),
			free:    zoned(3, "a", "b"),
			counts:  domainCounts{key("workers"): {"c": 0}},
			want:    map[string]int{"a": 1, "b": 1},
			held:    map[string]string{"s2": `waiting for a free inventory in topology.kubernetes.io/zone="c"`},
		},
		{
			name:    "the defaults are DoNotSchedule and maxSkew 1",
			waiting: pool(3, "s", "workers", defaults),
			free:    zoned(3, "a", "b"),
			counts:  domainCounts{key("workers"): {"c": 0}},
			want:    map[string]int{"a": 1, "b": 1},
			held:    map[string]string{"s2": "maxSkew 1, DoNotSchedule"},
		},
		{
			name:    "ScheduleAnyway proceeds, least used first",
			waiting: pool(3, "s", "workers", anyway),
			free:    zoned(3, "a", "b"),
			counts:  domainCounts{key("workers"): {"c": 0}},
			want:    map[string]int{"a": 2, "b": 1},
		},
		{
			name:    "maxSkew 2 allows two ahead of an empty zone",
			waiting: pool(5, "s", "workers", skew2),
			free:    zoned(3, "a", "b"),
			counts:  domainCounts{key("workers"): {"c": 0}},
			want:    map[string]int{"a": 2, "b": 2},
			held:    map[string]string{"s4": "maxSkew 2"},
		},
		{
			name:    "DoNotSchedule never claims an inventory without the label",
			waiting: pool(1, "s", "workers", dns),
			free:    zoned(2, ""),
			held:    map[string]string{"s0": "no free matching inventory has the label topology.kubernetes.io/zone"},
		},
		{
			name:    "ScheduleAnyway: inventories without the label are one domain of their own",
			waiting: pool(3, "s", "workers", anyway),
			free:    append(zoned(2, ""), zoned(2, "a")...),
			want:    map[string]int{"": 2, "a": 1}, // alternating, ties by name (no label first)
		},
		{
			name:    "two pools of one cluster spread independently",
			waiting: append(pool(3, "x", "pool-x", dns), pool(3, "y", "pool-y", dns)...),
			free:    zoned(2, "a", "b", "c"),
			counts:  domainCounts{key("pool-x"): {"a": 1, "b": 0, "c": 0}, key("pool-y"): {"a": 0, "b": 0, "c": 0}},
			// pool-x: b, c, then a or b or c (all 1): a; pool-y: a, b, c.
			want: map[string]int{"a": 2, "b": 2, "c": 2},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pairs, held := decide(tc.waiting, tc.free, tc.counts)
			got := map[string]int{}
			seen := map[string]bool{}
			for _, p := range pairs {
				require.False(t, seen[p.mi.Name], "inventory %s handed out twice", p.mi.Name)
				seen[p.mi.Name] = true
				got[p.mi.Labels[zoneKey]]++
			}
			if tc.want == nil {
				tc.want = map[string]int{}
			}
			assert.Equal(t, tc.want, got)
			assert.Len(t, held, len(tc.held), "held: %v", held)
			for name, substr := range tc.held {
				assert.Contains(t, held[types.UID(name+"-uid")].reason, substr)
			}
		})
	}
}

func TestDecideSpreadPoolsSeparately(t *testing.T) {
	// pool-x already holds three in zone a: its next goes to b; pool-y,
	// counted on its own, starts with a (least used, ties by name).
	dns := &elementalv1.TopologySpread{TopologyKey: zoneKey}
	x := pooled(t, "x", "pool-x", dns)
	y := pooled(t, "y", "pool-y", dns)
	counts := domainCounts{spreadKey("ns/c1/pool-x", zoneKey): {"a": 3, "b": 3, "c": 2}}
	pairs, held := decide([]waitingSelector{x, y}, zoned(1, "a", "c"), counts)
	require.Empty(t, held)
	got := map[string]string{}
	for _, p := range pairs {
		got[p.mis.Name] = p.mi.Labels[zoneKey]
	}
	assert.Equal(t, map[string]string{"x": "c", "y": "a"}, got)

	// A selector of another cluster with the same template name is another pool.
	other := pooled(t, "z", "pool-x", dns)
	other.mis.Labels[clusterNameLabel] = "c2"
	other.pool = poolOf(other.mis)
	assert.NotEqual(t, x.pool, other.pool)
	// Not cloned from a template: a pool of its own.
	alone := waitingFor(t, "alone", elementalv1.LabelSelector{})
	assert.Equal(t, "ns/uid:alone-uid", poolOf(alone.mis))
}

func TestSpreadReasonIsBounded(t *testing.T) {
	ts := &elementalv1.TopologySpread{TopologyKey: zoneKey, MaxSkew: 1}
	counts := map[string]int{}
	for i := 0; i < 1000; i++ {
		counts[fmt.Sprintf("zone-%04d-%s", i, string(make([]byte, 50)))] = 0
	}
	counts["busy"] = 5
	_, ok, why := spreadChoice(ts, counts, []string{"busy"})
	assert.False(t, ok)
	assert.Less(t, len(why.reason)+len(why.holds), 4096)
	assert.Contains(t, why.holds, "…")
}

// The reason a spread holds a selector is a class (the short domains): it
// does not move while the pool fills elsewhere, so the verdict is no news
// and the waiting selector's status is not rewritten; the counts are shown
// but not compared.
func TestSpreadReasonStableAsPoolFills(t *testing.T) {
	ts := &elementalv1.TopologySpread{TopologyKey: zoneKey, MaxSkew: 1}
	_, ok, before := spreadChoice(ts, map[string]int{"a": 3, "b": 3, "c": 2}, []string{"a", "b"})
	require.False(t, ok)
	_, ok, after := spreadChoice(ts, map[string]int{"a": 3, "b": 3, "c": 2, "d": 2}, []string{"a", "b"})
	require.False(t, ok)
	assert.Equal(t, `topology spread (maxSkew 1, DoNotSchedule): waiting for a free inventory in `+zoneKey+`="c"`, before.reason)
	assert.Equal(t, `the pool holds {"a": 3, "b": 3, "c": 2}`, before.holds)
	assert.NotEqual(t, before.reason, after.reason, "another short domain is news")

	_, _, moved := spreadChoice(ts, map[string]int{"a": 4, "b": 4, "c": 3}, []string{"a", "b"})
	_, _, grown := spreadChoice(ts, map[string]int{"a": 5, "b": 4, "c": 3}, []string{"a", "b"})
	require.NotEmpty(t, moved.reason)
	assert.Equal(t, moved.reason, grown.reason)
	assert.NotEqual(t, moved.holds, grown.holds)
	v1 := Verdict{Spread: moved.reason, Holds: moved.holds}
	v2 := Verdict{Spread: grown.reason, Holds: grown.holds}
	assert.True(t, v1.sameAs(v2), "only the counts moved")
	assert.False(t, v1.sameAs(Verdict{}), "held by the spread vs nothing free")
	assert.False(t, v1.sameAs(Verdict{ClaimErr: "x", Spread: moved.reason}))
}

func TestSpreadOfDefaults(t *testing.T) {
	mis := &elementalv1.MachineInventorySelector{ObjectMeta: metav1.ObjectMeta{Name: "s"}}
	assert.Nil(t, spreadOf(mis), "no spread")
	mis.Spec.TopologySpread = &elementalv1.TopologySpread{}
	assert.Nil(t, spreadOf(mis), "no key, no spread")
	mis.Spec.TopologySpread = &elementalv1.TopologySpread{TopologyKey: "k"}
	assert.Equal(t, &elementalv1.TopologySpread{TopologyKey: "k", MaxSkew: 1, WhenUnsatisfiable: elementalv1.DoNotSchedule}, spreadOf(mis))
}

func TestBuildStatusSaysWhichDomainIsShort(t *testing.T) {
	msg := `topology spread (maxSkew 1, DoNotSchedule): waiting for a free inventory in zone="c"`
	holds := `the pool holds {"a": 1, "b": 1, "c": 0}`
	st := buildStatus(unitSelector(), observation{judged: true, spreadWait: msg, whyNot: holds})
	for _, typ := range []string{elementalv1.ConditionInventoryReady, elementalv1.ConditionReady} {
		c := meta.FindStatusCondition(st.Conditions, typ)
		require.NotNil(t, c, typ)
		assert.Equal(t, elementalv1.ReasonWaitingForInventory, c.Reason, typ)
		assert.Equal(t, msg+"; "+holds, c.Message, typ)
	}
	// Before the counts are known, the short domain alone.
	st = buildStatus(unitSelector(), observation{judged: true, spreadWait: msg})
	assert.Equal(t, msg, meta.FindStatusCondition(st.Conditions, elementalv1.ConditionReady).Message)
	// Without a Machine yet, that comes first.
	st = buildStatus(unitSelector(), observation{waitingMachine: true, spreadWait: msg})
	assert.Equal(t, "waiting for a matching inventory", meta.FindStatusCondition(st.Conditions, elementalv1.ConditionReady).Message)
}
