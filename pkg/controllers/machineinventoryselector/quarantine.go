package machineinventoryselector

import (
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
)

// ReleasingFor maps an inventory being released to <namespace>/<selector
// name> (the release annotation), so a selector can say that a host it gave
// up has not applied the cleanup plan yet.
const ReleasingFor = "inventory-releasing-for"

func indexReleasingFor(mi *elementalv1.MachineInventory) ([]string, error) {
	if inventory.Releasing(mi) {
		return []string{mi.Namespace + "/" + mi.Annotations[elementalv1.ReleaseAnnotation]}, nil
	}
	return nil, nil
}

// giveUp releases a quarantined inventory from a selector that is not ready
// (a ready one is never moved: docs/contracts.md, Cluster API). The claim
// is dropped and the release annotation set in one write, as the finalizer
// does, but never by deleting the inventory: the host gets the cleanup plan
// and stays cordoned. The allocator then claims another inventory; the
// status, cleared of the old ref and checksum, says the old host is still
// being cleaned.
func (h *handler) giveUp(mis *elementalv1.MachineInventorySelector, mi *elementalv1.MachineInventory) (*elementalv1.MachineInventorySelector, error) {
	h.cleaned.watch(mi, mis) // before the write: its events must find it
	if _, err := h.inventories.Update(inventory.Release(mi, mis)); err != nil && !apierrors.IsNotFound(err) {
		return mis, err
	}
	h.recorder.Eventf(mis, corev1.EventTypeWarning, elementalv1.ReasonInventoryQuarantined,
		"gave up inventory %s (%s); it gets the cleanup plan, claiming another", mi.Name, mi.Annotations[elementalv1.CordonedAnnotation])
	h.planned.forget(mis.UID)
	h.alloc.Enqueue(mis.Namespace)
	return h.writeStatus(mis, observation{})
}

// releasedHosts lists "<inventory> (<cordon reason>)" for each quarantined
// inventory this selector gave up whose host has not applied the cleanup
// plan yet: those the cache shows releasing for it (found again after a
// restart), and those it gave up in this process that the cache does not
// show released yet (our own write may not have reached it).
func (h *handler) releasedHosts(mis *elementalv1.MachineInventorySelector) []string {
	hosts := map[string]string{}
	if list, err := h.inventories.Cache().GetByIndex(ReleasingFor, mis.Namespace+"/"+mis.Name); err == nil {
		for _, mi := range list {
			if inventory.Quarantined(mi) {
				h.cleaned.watch(mi, mis)
				hosts[mi.Name] = mi.Annotations[elementalv1.CordonedAnnotation]
			}
		}
	}
	for _, key := range h.cleaned.of(mis) {
		ns, name := splitKey(key)
		mi, err := h.inventories.Cache().Get(ns, name)
		if apierrors.IsNotFound(err) {
			h.cleaned.forget(key)
			continue
		}
		if err == nil && cleaning(mi, mis.Name) {
			hosts[mi.Name] = mi.Annotations[elementalv1.CordonedAnnotation]
		}
	}
	out := make([]string, 0, len(hosts))
	for name, reason := range hosts {
		out = append(out, name+" ("+reason+")")
	}
	sort.Strings(out)
	return out
}

// cleaning: the inventory is still on its way back from the selector
// named: releasing, or (cache behind our release write) still claimed by it.
func cleaning(mi *elementalv1.MachineInventory, selector string) bool {
	if inventory.Releasing(mi) {
		return true
	}
	c, ok := inventory.ClaimOf(mi)
	return ok && c.Selector == selector
}

// cleanupWatch remembers which selector waits for which released host, so
// the end of its cleanup (the release annotation removed, which leaves no
// trace of the selector on the inventory) wakes that selector.
type cleanupWatch struct {
	mu sync.Mutex
	m  map[string]string // inventory namespace/name → selector name
}

func (c *cleanupWatch) watch(mi *elementalv1.MachineInventory, mis *elementalv1.MachineInventorySelector) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]string{}
	}
	c.m[mi.Namespace+"/"+mi.Name] = mis.Name
}

// of lists the inventories (namespace/name) the selector waits for.
func (c *cleanupWatch) of(mis *elementalv1.MachineInventorySelector) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for key, name := range c.m {
		if ns, _ := splitKey(key); ns == mis.Namespace && name == mis.Name {
			out = append(out, key)
		}
	}
	return out
}

func (c *cleanupWatch) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}

// done returns the selector waiting for mi's cleanup once mi is back
// (neither releasing nor still claimed by it), and forgets it.
func (c *cleanupWatch) done(mi *elementalv1.MachineInventory) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := mi.Namespace + "/" + mi.Name
	name, ok := c.m[key]
	if !ok || cleaning(mi, name) {
		return "", false
	}
	delete(c.m, key)
	return name, true
}
