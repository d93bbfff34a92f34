package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

func keys(prefix string, n int) map[string]string {
	m := make(map[string]string, n)
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("%s%d", prefix, i)] = "v"
	}
	return m
}

func TestMetaCapsCheck(t *testing.T) {
	caps := metaCaps{labels: 4, annotations: 3, bytes: 100}
	inv := func(labels, annotations map[string]string) *elementalv1.MachineInventory {
		return &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}}
	}
	tests := []struct {
		name                string
		caps                metaCaps
		existing            *elementalv1.MachineInventory
		labels, annotations map[string]string
		want                string // refusal reason, "" admitted
	}{
		{name: "new host within every cap", caps: caps, labels: keys("l", 4), annotations: keys("a", 3)},
		{name: "new host, one label too many", caps: caps, labels: keys("l", 5), want: refusedLabels},
		{name: "new host, one annotation too many", caps: caps, annotations: keys("a", 4), want: refusedAnnotations},
		{name: "new host, bytes over", caps: caps, annotations: map[string]string{"a": strings.Repeat("x", 100)}, want: refusedMetadataBytes},
		{name: "bytes exactly at the cap", caps: caps, annotations: map[string]string{"a": strings.Repeat("x", 99)}},
		{name: "re-registration merges: new keys push it over", caps: caps, existing: inv(keys("l", 3), nil), labels: keys("m", 2), want: refusedLabels},
		{name: "re-registration of the same keys stays within", caps: caps, existing: inv(keys("l", 4), nil), labels: keys("l", 4)},
		{name: "already over (by hand) and not growing: admitted", caps: caps, existing: inv(keys("l", 9), nil), labels: keys("l", 2)},
		{name: "already over and growing: refused", caps: caps, existing: inv(keys("l", 9), nil), labels: keys("m", 1), want: refusedLabels},
		{name: "already over in bytes, a longer value: refused", caps: caps,
			existing: inv(nil, map[string]string{"a": strings.Repeat("x", 200)}), annotations: map[string]string{"a": strings.Repeat("x", 201)}, want: refusedMetadataBytes},
		{name: "already over in bytes, a shorter value: admitted", caps: caps,
			existing: inv(nil, map[string]string{"a": strings.Repeat("x", 200)}), annotations: map[string]string{"a": "short"}},
		{name: "no caps", caps: metaCaps{-1, -1, -1}, labels: keys("l", 1000), annotations: keys("a", 1000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.caps.check(tt.existing, tt.labels, tt.annotations)
			switch {
			case tt.want == "" && got != nil:
				t.Fatalf("refused: %v", got)
			case tt.want != "" && got == nil:
				t.Fatalf("admitted, want %s", tt.want)
			case got != nil && got.reason != tt.want:
				t.Fatalf("reason %s (%s), want %s", got.reason, got.msg, tt.want)
			}
		})
	}
}

func TestTopLevelKeys(t *testing.T) {
	tests := []struct {
		payload string
		limit   int
		want    int
	}{
		{`{}`, 5, 0},
		{`{"a":"b","c":"d"}` + "\n", 5, 2},
		{`{"a":{"x":1,"y":[1,2]},"b":"c"}`, 5, 2},   // nested keys do not count
		{`{"a":"1","b":"2","c":"3","d":"4"}`, 2, 3}, // stops past the limit
		{`not json`, 5, 0},
		{`["a","b"]`, 5, 0},
		{`{"a":"b",`, 5, 1},
	}
	for _, tt := range tests {
		if got := topLevelKeys([]byte(tt.payload), tt.limit); got != tt.want {
			t.Errorf("topLevelKeys(%s, %d) = %d, want %d", tt.payload, tt.limit, got, tt.want)
		}
	}
}

func TestMetaCapsSent(t *testing.T) {
	caps := metaCaps{labels: 3, annotations: 2}
	if e := caps.sent("labels", []byte(`{"a":"","b":"","c":""}`), 0); e != nil {
		t.Errorf("3 labels refused: %v", e)
	}
	if e := caps.sent("labels", []byte(`{"a":"","b":""}`), 2); e == nil || e.reason != refusedLabels {
		t.Errorf("2 more labels after 2: %v", e)
	} else if e.msg != "more than 3 labels sent in one registration" {
		t.Errorf("message %q", e.msg)
	}
	if e := caps.sent("annotations", []byte(`{"a":"","b":"","c":""}`), 0); e == nil || e.reason != refusedAnnotations {
		t.Errorf("3 annotations: %v", e)
	}
	if e := (metaCaps{labels: -1}).sent("labels", []byte(`{"a":"","b":""}`), 100); e != nil {
		t.Errorf("no cap: %v", e)
	}
}

func TestEventGate(t *testing.T) {
	var g eventGate
	t0 := time.Unix(1000, 0)
	steps := []struct {
		key        string
		at         time.Duration
		pass       bool
		suppressed int
	}{
		{"a", 0, true, 0},
		{"a", time.Second, false, 0},
		{"b", time.Second, true, 0}, // another registration or reason
		{"a", 30 * time.Second, false, 0},
		{"a", 61 * time.Second, true, 2},
		{"a", 62 * time.Second, false, 0},
		{"a", 10 * time.Minute, true, 1},
	}
	for i, s := range steps {
		pass, n := g.pass(s.key, t0.Add(s.at))
		if pass != s.pass || n != s.suppressed {
			t.Errorf("step %d (%s at %s): pass %v suppressed %d, want %v %d", i, s.key, s.at, pass, n, s.pass, s.suppressed)
		}
	}
	// Stale entries without suppressed refusals are dropped: memory stays
	// bounded by the keys seen recently.
	g.pass("c", t0.Add(time.Hour))
	if len(g.last) != 1 {
		t.Errorf("%d entries kept, want 1", len(g.last))
	}
}

func TestBoundedWarnings(t *testing.T) {
	var warns []warning
	for i := 0; i < 20; i++ {
		warns = append(warns, warning{"InvalidLabel", strings.Repeat("k", 2000)})
	}
	got := boundedWarnings(warns)
	if len(got) != maxWarningEvents+1 {
		t.Fatalf("%d warnings, want %d", len(got), maxWarningEvents+1)
	}
	for _, w := range got {
		if len(w.message) > maxWarningMessage+len("…") {
			t.Errorf("message of %d bytes", len(w.message))
		}
	}
	if last := got[len(got)-1].message; last != "15 more keys or templates skipped in this registration" {
		t.Errorf("summary %q", last)
	}
	if got := boundedWarnings(warns[:2]); len(got) != 2 {
		t.Errorf("2 warnings became %d", len(got))
	}
}
