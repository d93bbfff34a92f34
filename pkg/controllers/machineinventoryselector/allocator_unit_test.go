package machineinventoryselector

import (
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

func waitingFor(t *testing.T, name string, sel elementalv1.LabelSelector) waitingSelector {
	mis := &elementalv1.MachineInventorySelector{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name + "-uid")}}
	mis.Spec.Selector = sel
	s, err := sel.AsSelector()
	require.NoError(t, err)
	return waitingSelector{mis: mis, selector: s}
}

// spreadPick is the candidate decide picks for uid among n matching ones.
func spreadPick(uid types.UID, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(uid))
	return int(h.Sum32() % uint32(n))
}

func TestDecide(t *testing.T) {
	gpu := elementalv1.LabelSelector{MatchLabels: map[string]string{"gpu": "yes"}}
	all := elementalv1.LabelSelector{}
	zoneIn := elementalv1.LabelSelector{MatchExpressions: []elementalv1.LabelSelectorRequirement{{Key: "zone", Operator: metav1.LabelSelectorOpIn, Values: []string{"b"}}}}
	free := func(names ...string) []*elementalv1.MachineInventory {
		labels := map[string]map[string]string{
			"a-gpu":  {"gpu": "yes", "zone": "a"},
			"b-cpu":  {"gpu": "no", "zone": "b"},
			"c-gpu":  {"gpu": "yes", "zone": "b"},
			"d-none": nil,
		}
		var out []*elementalv1.MachineInventory
		for _, n := range names {
			out = append(out, unitInventory(n, labels[n]))
		}
		return out
	}
	cases := []struct {
		name    string
		waiting []waitingSelector
		free    []*elementalv1.MachineInventory
		want    map[string]string // selector → inventory
	}{
		{
			name:    "nothing free",
			waiting: []waitingSelector{waitingFor(t, "s1", all)},
			want:    map[string]string{},
		},
		{
			name: "nobody waiting",
			free: free("a-gpu"),
			want: map[string]string{},
		},
		{
			name:    "one match",
			waiting: []waitingSelector{waitingFor(t, "s1", gpu)},
			free:    free("a-gpu", "b-cpu"),
			want:    map[string]string{"s1": "a-gpu"},
		},
		{
			name:    "no match leaves the selector out",
			waiting: []waitingSelector{waitingFor(t, "s1", gpu)},
			free:    free("b-cpu", "d-none"),
			want:    map[string]string{},
		},
		{
			name:    "match expressions",
			waiting: []waitingSelector{waitingFor(t, "s1", zoneIn)},
			free:    free("a-gpu", "c-gpu", "d-none"),
			want:    map[string]string{"s1": "c-gpu"},
		},
		{
			name:    "an inventory is handed out once; the older selector wins",
			waiting: []waitingSelector{waitingFor(t, "old", gpu), waitingFor(t, "young", gpu)},
			free:    free("a-gpu", "b-cpu"),
			want:    map[string]string{"old": "a-gpu"},
		},
		{
			name:    "two selectors, two matches: both served",
			waiting: []waitingSelector{waitingFor(t, "s1", gpu), waitingFor(t, "s2", gpu)},
			free:    free("a-gpu", "c-gpu"),
			want: func() map[string]string {
				gpus := []string{"a-gpu", "c-gpu"}
				first := gpus[spreadPick("s1-uid", 2)]
				second := gpus[1-spreadPick("s1-uid", 2)]
				return map[string]string{"s1": first, "s2": second}
			}(),
		},
		{
			name:    "a specific selector after a catch-all may go without",
			waiting: []waitingSelector{waitingFor(t, "all", all), waitingFor(t, "gpu", gpu)},
			free:    free("a-gpu"),
			want:    map[string]string{"all": "a-gpu"},
		},
		{
			name:    "the pick spreads by selector UID",
			waiting: []waitingSelector{waitingFor(t, "s1", all)},
			free:    free("a-gpu", "b-cpu", "c-gpu", "d-none"),
			want:    map[string]string{"s1": []string{"a-gpu", "b-cpu", "c-gpu", "d-none"}[spreadPick("s1-uid", 4)]},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]string{}
			pairs, held := decide(tc.waiting, tc.free, nil)
			assert.Empty(t, held, "no spread, nobody held")
			for _, p := range pairs {
				_, dup := got[p.mis.Name]
				assert.False(t, dup, "selector %s paired twice", p.mis.Name)
				got[p.mis.Name] = p.mi.Name
			}
			assert.Equal(t, tc.want, got)
			again, _ := decide(tc.waiting, tc.free, nil)
			assert.Equal(t, pairs, again, "deterministic")
		})
	}
}

// A waiting selector hears from the allocator (and so its status is
// written) only when its verdict says something new: passes that leave it
// waiting for the same reason while the pool's counts move are no news,
// though the newest counts are kept for the message's next refresh.
func TestJudgeWakesOnlyOnNews(t *testing.T) {
	a := newAllocator(nil, nil, nil)
	woken := 0
	a.onJudged = func(*elementalv1.MachineInventorySelector) { woken++ }
	mis := waitingFor(t, "s", elementalv1.LabelSelector{}).mis
	short := `topology spread (maxSkew 1, DoNotSchedule): waiting for a free inventory in zone="c"`
	steps := []struct {
		v    Verdict
		news bool
	}{
		{Verdict{}, true},  // first verdict: nothing free
		{Verdict{}, false}, // same
		{Verdict{Spread: short, Holds: `{"a": 1, "b": 1}`}, true}, // now the spread holds it
		{Verdict{Spread: short, Holds: `{"a": 2, "b": 1}`}, false},
		{Verdict{Spread: short, Holds: `{"a": 2, "b": 2}`}, false},
		{Verdict{ClaimErr: "claiming inventory x: forbidden"}, true},
		{Verdict{}, true},
	}
	want := 0
	for i, s := range steps {
		a.judge(mis, s.v)
		if s.news {
			want++
		}
		require.Equal(t, want, woken, "step %d", i)
		got, ok := a.verdict(mis.UID)
		require.True(t, ok)
		assert.Equal(t, s.v, got, "the newest verdict is kept, counts included")
	}
}

// BenchmarkDecide: one pass pairing every waiting selector of a burst with
// a free inventory (the bench's shape: one label, every inventory matches),
// with and without a topology spread over 3 zones.
func BenchmarkDecide(b *testing.B) {
	for _, size := range []struct{ waiting, free int }{{1000, 1000}, {1000, 10000}} {
		for _, spread := range []bool{false, true} {
			b.Run(fmt.Sprintf("waiting=%d/free=%d/spread=%v", size.waiting, size.free, spread), func(b *testing.B) {
				free := make([]*elementalv1.MachineInventory, size.free)
				for i := range free {
					free[i] = unitInventory(fmt.Sprintf("host-%05d", i), map[string]string{"element": "fire", zoneKey: fmt.Sprintf("zone-%d", i%3)})
				}
				var ts *elementalv1.TopologySpread
				if spread {
					ts = &elementalv1.TopologySpread{TopologyKey: zoneKey}
				}
				waiting := make([]waitingSelector, size.waiting)
				for i := range waiting {
					w := waitingFor(&testing.T{}, fmt.Sprintf("m-%05d", i), elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}})
					w.mis.Spec.TopologySpread = ts
					w.pool = poolOf(w.mis)
					waiting[i] = w
				}
				b.ResetTimer()
				for n := 0; n < b.N; n++ {
					pairs, _ := decide(waiting, free, nil)
					if len(pairs) != size.waiting {
						b.Fatalf("paired %d of %d", len(pairs), size.waiting)
					}
				}
			})
		}
	}
}
