package testenv

import (
	"net/http"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// WriteCounter counts the mutating API requests made through a rest.Config,
// by "METHOD resource[/subresource]", so tests and benchmarks can check how
// many writes a flow costs.
type WriteCounter struct {
	mu     sync.Mutex
	counts map[string]int
	byNS   map[string]map[string]int
}

// CountWrites returns a copy of cfg whose requests are counted.
func CountWrites(cfg *rest.Config) (*rest.Config, *WriteCounter) {
	c := &WriteCounter{counts: map[string]int{}, byNS: map[string]map[string]int{}}
	out := rest.CopyConfig(cfg)
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method != http.MethodGet && req.Method != http.MethodHead {
				c.add(namespaceOf(req.URL.Path), req.Method+" "+resourceOf(req.URL.Path))
			}
			return rt.RoundTrip(req)
		})
	})
	return out, c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (c *WriteCounter) add(ns, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[key]++
	if c.byNS[ns] == nil {
		c.byNS[ns] = map[string]int{}
	}
	c.byNS[ns][key]++
}

// InNamespace returns the counts of writes to objects in namespace ns.
func (c *WriteCounter) InNamespace(ns string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.byNS[ns]))
	for k, v := range c.byNS[ns] {
		out[k] = v
	}
	return out
}

// namespaceOf returns the namespace of a namespaced resource path, else "".
func namespaceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "namespaces" && i+2 < len(parts) {
			return parts[i+1]
		}
	}
	return ""
}

// Snapshot returns the counts so far.
func (c *WriteCounter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Total is the number of writes whose key contains substr (all when empty).
func (c *WriteCounter) Total(substr string) int {
	n := 0
	for k, v := range c.Snapshot() {
		if strings.Contains(k, substr) {
			n += v
		}
	}
	return n
}

// resourceOf turns /apis/g/v/namespaces/ns/res/name/sub into "res/sub".
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) > 0 && parts[0] == "api" {
		parts = parts[2:]
	} else if len(parts) > 2 && parts[0] == "apis" {
		parts = parts[3:]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return "namespaces"
	case 1, 2:
		return parts[0]
	default:
		return parts[0] + "/" + parts[2]
	}
}
