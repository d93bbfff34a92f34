package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
)

// Refusal reasons of the bounds on what hosts make the server write (README
// "Configuration", MachineRegistration spec.limits).
const (
	refusedLabels         = "inventory_labels"
	refusedAnnotations    = "inventory_annotations"
	refusedMetadataBytes  = "inventory_metadata_bytes"
	refusedMaxInventories = "max_inventories"
	refusedInventoryRate  = "inventory_rate"
)

// Default metadata caps. elemental-register sends about ten annotations and
// the few labels of its config; registrations rarely template more than a
// dozen: the defaults leave an order of magnitude of room, and keep an
// inventory's metadata far below the API server's 256 KiB for annotations.
const (
	DefaultInventoryMaxLabels        = 256
	DefaultInventoryMaxAnnotations   = 256
	DefaultInventoryMaxMetadataBytes = 128 << 10
)

// registrationIndex indexes inventories by the registration that created
// them (namespace/name, from the annotation hosts can never set).
const registrationIndex = "elemental.cattle.io/inventory-registration"

func inventoryRegistration(mi *elementalv1.MachineInventory) ([]string, error) {
	if name := mi.Annotations[elementalv1.MachineRegistrationAnnotation]; name != "" {
		return []string{mi.Namespace + "/" + name}, nil
	}
	return nil, nil
}

// refusalError is a registration refused by a bound: the host gets the
// message as the protocol's Error, the metric counts the reason, and the
// MachineRegistration gets a rate-limited Event (eventGate).
type refusalError struct{ reason, msg string }

func (e *refusalError) Error() string { return e.msg }

// metaCaps bound the labels and annotations of one inventory (≤ 0: none).
type metaCaps struct{ labels, annotations, bytes int }

func metadataBytes(labels, annotations map[string]string) int {
	n := 0
	for _, m := range []map[string]string{labels, annotations} {
		for k, v := range m {
			n += len(k) + len(v)
		}
	}
	return n
}

func mergedWith(have, write map[string]string) map[string]string {
	out := make(map[string]string, len(have)+len(write))
	for k, v := range have {
		out[k] = v
	}
	for k, v := range write {
		out[k] = v
	}
	return out
}

// check judges what a registration writes (labels and annotations, merged
// into existing's; existing is nil for a new host). Over a cap it is
// refused, unless the inventory was already over it and this write does not
// make it bigger: objects written before the cap (or by hand) keep
// re-registering, and no registration ever grows one past a cap.
func (c metaCaps) check(existing *elementalv1.MachineInventory, labels, annotations map[string]string) *refusalError {
	var haveL, haveA map[string]string
	if existing != nil {
		haveL, haveA = existing.Labels, existing.Annotations
	}
	l, a := mergedWith(haveL, labels), mergedWith(haveA, annotations)
	if c.labels > 0 && len(l) > c.labels && len(l) > len(haveL) {
		return &refusalError{refusedLabels, fmt.Sprintf("registration would give the MachineInventory %d labels, over the limit of %d", len(l), c.labels)}
	}
	if c.annotations > 0 && len(a) > c.annotations && len(a) > len(haveA) {
		return &refusalError{refusedAnnotations, fmt.Sprintf("registration would give the MachineInventory %d annotations, over the limit of %d", len(a), c.annotations)}
	}
	if n := metadataBytes(l, a); c.bytes > 0 && n > c.bytes && n > metadataBytes(haveL, haveA) {
		return &refusalError{refusedMetadataBytes, fmt.Sprintf("registration would give the MachineInventory %d bytes of labels and annotations, over the limit of %d", n, c.bytes)}
	}
	return nil
}

// sent refuses a host that sends more label (or annotation) keys than an
// inventory may have, as soon as it does; have is how many it sent before.
func (c metaCaps) sent(kind string, payload []byte, have int) *refusalError {
	limit, reason := c.labels, refusedLabels
	if kind == "annotations" {
		limit, reason = c.annotations, refusedAnnotations
	}
	if limit <= 0 {
		return nil
	}
	if n := have + topLevelKeys(payload, limit-have); n > limit {
		return &refusalError{reason, fmt.Sprintf("more than %d %s sent in one registration", limit, kind)}
	}
	return nil
}

// topLevelKeys counts the keys of a JSON object payload, stopping once it
// has seen more than limit: nothing is kept, so a payload of many small
// keys is refused without building the map. Malformed JSON ends the count
// (the decoder that follows reports it).
func topLevelKeys(payload []byte, limit int) int {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0
	}
	n := 0
	for n <= limit && dec.More() {
		if _, err := dec.Token(); err != nil { // the key
			return n
		}
		n++
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil { // the value
			return n
		}
	}
	return n
}

// quota admits new inventories under a registration's spec.limits. It
// counts the registration's inventories in the cache (registrationIndex)
// plus this replica's creations the cache has not shown yet, so one
// replica never admits more than the limits, however many hosts race.
type quota struct {
	mu      sync.Mutex
	pending map[string][]*reservation // by registration namespace/name
}

// reservation is one admitted creation: counted from admission until the
// cache shows the inventory (or the creation failed).
type reservation struct {
	q   *quota
	key string
	at  time.Time
	// name is the inventory's, known before the create: the cache may show
	// the inventory before the create's reply is back, and must not count
	// it twice.
	name    string
	created bool
}

// pendingTTL drops a created reservation the cache never showed (the
// inventory lost a uniqueness race and was deleted, or the watch lags).
const pendingTTL = 2 * time.Minute

// rateWindow is the window of newInventoriesPerMinute.
const rateWindow = time.Minute

// admit reserves the creation of inventory name for a new host of mr, or
// refuses it. A nil reservation with a nil refusal means mr has no limits.
func (s *Server) admit(mr *elementalv1.MachineRegistration, now time.Time, name string) (*reservation, error) {
	lim := mr.Spec.Limits
	if lim == nil || (lim.MaxInventories == nil && lim.NewInventoriesPerMinute == nil) {
		return nil, nil
	}
	key := mr.Namespace + "/" + mr.Name
	mis, err := s.inventories.GetByIndex(registrationIndex, key)
	if err != nil {
		return nil, &replyError{"reading the registration's inventories failed"}
	}
	q := &s.quota
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending == nil {
		q.pending = map[string][]*reservation{}
	}
	seen := make(map[string]bool, len(mis))
	live, recent := 0, 0
	oldest := now
	for _, mi := range mis {
		seen[mi.Name] = true
		if mi.DeletionTimestamp == nil {
			live++
		}
		if t := mi.CreationTimestamp.Time; t.After(now.Add(-rateWindow)) {
			recent++
			if t.Before(oldest) {
				oldest = t
			}
		}
	}
	kept := q.pending[key][:0]
	for _, r := range q.pending[key] {
		if seen[r.name] || (r.created && now.Sub(r.at) > pendingTTL) {
			continue
		}
		kept = append(kept, r)
		live++
		recent++
		if r.at.Before(oldest) {
			oldest = r.at
		}
	}
	if len(kept) == 0 {
		delete(q.pending, key)
	} else {
		q.pending[key] = kept
	}
	if m := lim.MaxInventories; m != nil && live >= int(*m) {
		return nil, &refusalError{refusedMaxInventories, fmt.Sprintf(
			"MachineRegistration %s has reached its limit of %d MachineInventories; new hosts are refused", key, *m)}
	}
	if r := lim.NewInventoriesPerMinute; r != nil && recent >= int(*r) {
		wait := int(math.Ceil(oldest.Add(rateWindow).Sub(now).Seconds()))
		return nil, &refusalError{refusedInventoryRate, fmt.Sprintf(
			"MachineRegistration %s admits at most %d new hosts per minute; retry in %ds", key, *r, max(wait, 1))}
	}
	res := &reservation{q: q, key: key, at: now, name: name}
	q.pending[key] = append(q.pending[key], res)
	return res, nil
}

// done records the inventory the creation left ("" when nothing was
// created or it was deleted again: the reservation is dropped; another
// name when an older inventory of the same host won).
func (r *reservation) done(name string) {
	if r == nil {
		return
	}
	q := r.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if name != "" {
		r.name, r.created = name, true
		return
	}
	list := q.pending[r.key]
	for i, p := range list {
		if p == r {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(q.pending, r.key)
	} else {
		q.pending[r.key] = list
	}
}

// eventGate lets one refusal Event per registration and reason through per
// eventInterval and counts the others into the next one. client-go's
// spam filter keys on the object and type only: a flood of refusals would
// otherwise also silence every other Warning on the registration.
type eventGate struct {
	mu   sync.Mutex
	last map[string]*gateEntry
}

type gateEntry struct {
	at         time.Time
	suppressed int
}

const eventInterval = time.Minute

// pass reports whether an Event may be recorded now, and how many were
// suppressed since the last one.
func (g *eventGate) pass(key string, now time.Time) (bool, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last == nil {
		g.last = map[string]*gateEntry{}
	}
	// Entries are few (registrations × reasons); drop the stale ones.
	for k, e := range g.last {
		if now.Sub(e.at) > 2*eventInterval && e.suppressed == 0 {
			delete(g.last, k)
		}
	}
	e := g.last[key]
	if e == nil {
		g.last[key] = &gateEntry{at: now}
		return true, 0
	}
	if now.Sub(e.at) < eventInterval {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.at, e.suppressed = now, 0
	return true, n
}

// refusedRegistration records a refusal by a bound: metric, log, and the
// rate-limited RegistrationRefused Event on the registration.
func (s *Server) refusedRegistration(mr *elementalv1.MachineRegistration, remote string, e *refusalError) {
	refused(e.reason)
	metrics.Registrations.WithLabelValues(registrationAuth(mr), "failed").Inc()
	log := logrus.WithFields(logrus.Fields{"machineregistration": mr.Namespace + "/" + mr.Name, "remote": remote, "reason": e.reason})
	ok, suppressed := s.refusalEvents.pass(string(mr.UID)+"/"+e.reason, time.Now())
	if !ok {
		log.WithField("error", e.msg).Debug("registration refused")
		return
	}
	log.WithField("error", e.msg).Warn("registration refused")
	msg := fmt.Sprintf("host %s: %s", remote, e.msg)
	if suppressed > 0 {
		msg += fmt.Sprintf(" (and %d more refused for this reason since the previous Event)", suppressed)
	}
	s.recorder.Event(mr, corev1.EventTypeWarning, "RegistrationRefused", msg)
}

// bound runs the checks of what a registration writes before anything is
// written: the metadata caps (a new host's with the metadata only creation
// adds), then, for a new host, spec.limits. A reservation that is not nil
// must be completed with done.
func (s *Server) bound(mr *elementalv1.MachineRegistration, existing *elementalv1.MachineInventory, name string,
	labels, annotations map[string]string) (*reservation, error) {
	l, a := labels, annotations
	if existing == nil {
		l, a = mergedWith(nil, labels), mergedWith(nil, annotations)
		newInventoryMetadata(mr, a)
	}
	if e := s.limits.Load().meta.check(existing, l, a); e != nil {
		return nil, e
	}
	if existing != nil {
		return nil, nil
	}
	return s.admit(mr, time.Now(), name)
}

// maxWarningEvents bounds the template and key warnings recorded per
// registration; a longer message is cut (keys come from the host).
const (
	maxWarningEvents  = 5
	maxWarningMessage = 512
)

func boundedWarnings(warns []warning) []warning {
	out := make([]warning, 0, min(len(warns), maxWarningEvents+1))
	for i, w := range warns {
		if i == maxWarningEvents {
			out = append(out, warning{w.reason, fmt.Sprintf("%d more keys or templates skipped in this registration", len(warns)-i)})
			break
		}
		if len(w.message) > maxWarningMessage {
			w.message = w.message[:maxWarningMessage] + "…"
		}
		out = append(out, w)
	}
	return out
}
