package server_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
	"github.com/elemental-operator/elemental-operator/pkg/server"
)

// peakHeap samples HeapInuse until stopped and returns the highest value.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

// agentObjects are the names of the agent ServiceAccounts and the Secrets
// in ns: what a registration creates besides the inventory.
func agentObjects(t *testing.T, ns string) (accounts, secrets []string) {
	t.Helper()
	sas, err := env.Client.CoreV1().ServiceAccounts(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	for _, sa := range sas.Items {
		if strings.HasPrefix(sa.Name, "elemental-agent-") {
			accounts = append(accounts, sa.Name)
		}
	}
	list, err := env.Client.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	for _, s := range list.Items {
		secrets = append(secrets, s.Name)
	}
	return accounts, secrets
}

// onlyObjectsOf asserts that ns holds exactly the given inventories and no
// agent ServiceAccount or Secret of any other.
func onlyObjectsOf(t *testing.T, ns string, hosts ...string) {
	t.Helper()
	list, err := inventories.List(ns, metav1.ListOptions{})
	require.NoError(t, err)
	want := map[string]bool{}
	for _, h := range hosts {
		mi := inventoryByHash(t, ns, hashOf(h))
		require.NotNil(t, mi, "host %s has its inventory", h)
		want[mi.Name] = true
	}
	assert.Len(t, list.Items, len(hosts), "inventories in %s", ns)
	accounts, secrets := agentObjects(t, ns)
	for _, sa := range accounts {
		assert.True(t, want[strings.TrimPrefix(sa, "elemental-agent-")], "ServiceAccount %s belongs to an admitted host", sa)
	}
	for _, s := range secrets {
		assert.True(t, want[s], "Secret %s is an admitted host's plan Secret", s)
	}
}

// refusedEvents sums the RegistrationRefused Events recorded on mr.
func refusedEvents(t *testing.T, mr *elementalv1.MachineRegistration) (n int32, messages []string) {
	t.Helper()
	for _, e := range events(t, mr.Namespace) {
		if e.Reason == "RegistrationRefused" && e.InvolvedObject.UID == mr.UID {
			n += max(e.Count, 1)
			messages = append(messages, e.Message)
		}
	}
	return n, messages
}

// A label bomb (100,000 labels in one message, labels spread over
// messages, annotations too big in total) is refused with the documented
// Error; the server's memory stays bounded while it lasts; a host
// registering at the same time succeeds; nothing is created for the
// attackers; their refusals make one Event per reason.
func TestLabelBomb(t *testing.T) {
	ns := newNamespace(t)
	mr := newRegistration(t, ns, "bomb", macRegistration())
	labels0, ann0, bytes0 := refusals("inventory_labels"), refusals("inventory_annotations"), refusals("inventory_metadata_bytes")

	// 100,000 labels: ~1.2 MB, within the conversation's byte budget, so only
	// the label cap stops it.
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < 100000; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":""`, i)
	}
	b.WriteString("}")
	bomb := []byte(b.String())
	b.Reset()
	const attackers = 8

	runtime.GC()
	heap0 := heapInuse()
	stop := peakHeap()
	good := make(chan error, 1)
	go func() { good <- registerFrom(mr, "52:54:00:b0:00:01", goodSource) }()
	var wg sync.WaitGroup
	errs := make([]error, attackers)
	for i := 0; i < attackers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, resp := wsFrom(t, mr.Status.RegistrationURL, client.PlainAuth(fmt.Sprintf("52:54:00:b0:01:%02x", i)), "127.0.0.1")
			if ws == nil {
				errs[i] = fmt.Errorf("HTTP %d", resp.StatusCode)
				return
			}
			c := protocol.NewConn(ws, 10*time.Second, time.Time{})
			defer func() { _ = c.Close() }()
			if _, errs[i] = c.Expect(protocol.MsgReady); errs[i] != nil {
				return
			}
			if errs[i] = c.Write(protocol.MsgVersion, []byte{protocol.Version}); errs[i] != nil {
				return
			}
			if _, errs[i] = c.Expect(protocol.MsgVersion); errs[i] != nil {
				return
			}
			if errs[i] = c.Write(protocol.MsgLabels, bomb); errs[i] == nil {
				_, errs[i] = c.Expect(protocol.MsgReady)
			}
		}()
	}
	wg.Wait()
	peak := stop()
	require.NoError(t, <-good)
	for i, err := range errs {
		require.Error(t, err, "attacker %d", i)
		assert.Equal(t, fmt.Sprintf("more than %d labels sent in one registration", server.DefaultInventoryMaxLabels), err.Error(), "attacker %d", i)
	}
	// Memory: each attacker's 1.2 MB message is read once by the server and
	// held by its sender in this same process. Decoding it into a map (what
	// the server did before the cap) takes about 10 MB of heap each, 5 MB of
	// it kept for the rest of the conversation: over 100 MB for the eight.
	grown := int64(peak) - int64(heap0)
	peakBound := attackers*4<<20 + 16<<20
	if rancher != nil {
		// The simulated Rancher's proxy and the tunnel, in this process too,
		// relay each message on its way.
		peakBound += attackers * 3 << 20
	}
	t.Logf("heap in use: peak %d KiB above the start with %d label bombs (bound %d KiB)", grown>>10, attackers, peakBound>>10)
	assert.Less(t, grown, int64(peakBound))
	bomb = nil
	after := int64(heapInuse()) - int64(heap0)
	t.Logf("heap in use after the attack: %+d KiB", after>>10)
	assert.Less(t, after, int64(4<<20), "nothing of the attack is retained")

	// Labels spread over messages count together; annotations that pass the
	// count but not the byte cap are refused at Get.
	spread := client.Request{URL: mr.Status.RegistrationURL, CACert: hostCA, NetDialContext: dialerFrom("127.0.0.1"),
		Authorization: client.PlainAuth("52:54:00:b0:02:01"), Labels: keys(200, "a")}
	_, err := client.Register(context.Background(), spread)
	require.NoError(t, err, "200 labels are within the cap of 256")
	tooMany := client.Request{URL: mr.Status.RegistrationURL, CACert: hostCA, NetDialContext: dialerFrom("127.0.0.1"),
		Authorization: client.PlainAuth("52:54:00:b0:02:02"), Annotations: keys(300, "x")}
	_, err = client.Register(context.Background(), tooMany)
	require.Error(t, err)
	assert.Equal(t, fmt.Sprintf("more than %d annotations sent in one registration", server.DefaultInventoryMaxAnnotations), err.Error())
	big := map[string]string{}
	for i := 0; i < 40; i++ {
		big[fmt.Sprintf("blob%d", i)] = strings.Repeat("x", 4000)
	}
	heavy := client.Request{URL: mr.Status.RegistrationURL, CACert: hostCA, NetDialContext: dialerFrom("127.0.0.1"),
		Authorization: client.PlainAuth("52:54:00:b0:02:03"), Annotations: big}
	_, err = client.Register(context.Background(), heavy)
	require.Error(t, err)
	assert.Regexp(t, fmt.Sprintf(`^registration would give the MachineInventory \d+ bytes of labels and annotations, over the limit of %d$`, server.DefaultInventoryMaxMetadataBytes), err.Error())

	// A re-registration may not grow an inventory past the cap either: the
	// host with 200 labels comes back with 100 others.
	spread.Update, spread.Labels = true, keys(100, "b")
	_, err = client.Register(context.Background(), spread)
	require.Error(t, err)
	mi := inventoryByHash(t, ns, hashOf("52:54:00:b0:02:01"))
	require.NotNil(t, mi)
	assert.Equal(t, fmt.Sprintf("registration would give the MachineInventory %d labels, over the limit of %d", len(mi.Labels)+100, server.DefaultInventoryMaxLabels), err.Error())
	spread.Labels = keys(200, "a")
	_, err = client.Register(context.Background(), spread)
	require.NoError(t, err, "the same labels again are fine")

	onlyObjectsOf(t, ns, "52:54:00:b0:00:01", "52:54:00:b0:02:01")
	assert.Equal(t, float64(attackers), refusals("inventory_labels")-labels0-1) // and the grown re-registration
	assert.Equal(t, 1.0, refusals("inventory_annotations")-ann0)
	assert.Equal(t, 1.0, refusals("inventory_metadata_bytes")-bytes0)
	// One Event per reason, whatever the number of refusals.
	eventually(t, 10*time.Second, func() error {
		if n, msgs := refusedEvents(t, mr); n != 3 {
			return fmt.Errorf("%d RegistrationRefused events: %q", n, msgs)
		}
		return nil
	})
}

func keys(n int, prefix string) map[string]string {
	m := make(map[string]string, n)
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("%s%d", prefix, i)] = "v"
	}
	return m
}

// registerAll registers hosts concurrently and returns each one's error.
func registerAll(mr *elementalv1.MachineRegistration, hosts []string) []error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = registerFrom(mr, h, "127.0.0.1") }()
	}
	wg.Wait()
	return errs
}

func hostsNamed(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s:%02x", prefix, i)
	}
	return out
}

// spec.limits.maxInventories: of hosts racing to register, exactly the
// limit get in; the others get the documented Error and leave nothing
// behind; admitted hosts re-register; a host of another registration
// registers meanwhile; raising the limit admits the next host.
func TestInventoryQuota(t *testing.T) {
	ns := newNamespace(t)
	spec := macRegistration()
	spec.Limits = &elementalv1.RegistrationLimits{MaxInventories: ptr.To[int32](3)}
	mr := newRegistration(t, ns, "quota", spec)
	other := newRegistration(t, ns, "open", macRegistration())
	before := refusals("max_inventories")
	heap0 := heapInuse()

	hosts := hostsNamed("52:54:00:c0:00", 8)
	good := make(chan error, 1)
	go func() { good <- registerFrom(other, "52:54:00:c0:01:01", goodSource) }()
	errs := registerAll(mr, hosts)
	require.NoError(t, <-good, "a host of another registration")
	var admitted, refusedHosts []string
	for i, err := range errs {
		if err == nil {
			admitted = append(admitted, hosts[i])
			continue
		}
		refusedHosts = append(refusedHosts, hosts[i])
		assert.Equal(t, "MachineRegistration "+ns+"/quota has reached its limit of 3 MachineInventories; new hosts are refused", err.Error())
	}
	require.Len(t, admitted, 3, "exactly maxInventories hosts get in: %v", errs)
	assert.Equal(t, 5.0, refusals("max_inventories")-before)

	// Admitted hosts re-register (an existing host is never refused), while
	// new ones are still refused.
	for _, h := range admitted {
		_, err := register(t, mr, host{id: h, update: true})
		require.NoError(t, err, "re-registration of %s", h)
	}
	require.Error(t, registerFrom(mr, "52:54:00:c0:02:01", "127.0.0.1"))
	onlyObjectsOf(t, ns, append([]string{"52:54:00:c0:01:01"}, admitted...)...)
	for _, h := range refusedHosts {
		assert.Nil(t, inventoryByHash(t, ns, hashOf(h)))
	}
	grown := int64(heapInuse()) - int64(heap0)
	t.Logf("heap in use grew by %d KiB", grown>>10)
	assert.Less(t, grown, int64(8<<20))

	// 6 refusals, one Event (the next may come a minute later).
	eventually(t, 10*time.Second, func() error {
		n, msgs := refusedEvents(t, mr)
		if n != 1 {
			return fmt.Errorf("%d RegistrationRefused events: %q", n, msgs)
		}
		if !strings.Contains(msgs[0], "has reached its limit of 3 MachineInventories") {
			return fmt.Errorf("event message %q", msgs[0])
		}
		return nil
	})

	// Raised by the admin: the next host gets in.
	cur, err := registrations.Get(ns, "quota", metav1.GetOptions{})
	require.NoError(t, err)
	cur.Spec.Limits.MaxInventories = ptr.To[int32](4)
	_, err = registrations.Update(cur)
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() error { return registerFrom(mr, "52:54:00:c0:02:01", "127.0.0.1") })
	require.Error(t, registerFrom(mr, "52:54:00:c0:02:02", "127.0.0.1"), "and no more")
}

// spec.limits.newInventoriesPerMinute: of hosts racing to register, the
// rate's worth get in; the others are told when to retry and leave nothing
// behind; an admitted host re-registers at once; the window slides.
func TestInventoryRate(t *testing.T) {
	ns := newNamespace(t)
	spec := macRegistration()
	spec.Limits = &elementalv1.RegistrationLimits{NewInventoriesPerMinute: ptr.To[int32](2)}
	mr := newRegistration(t, ns, "rate", spec)
	before := refusals("inventory_rate")
	heap0 := heapInuse()

	hosts := hostsNamed("52:54:00:d0:00", 6)
	errs := registerAll(mr, hosts)
	var admitted []string
	for i, err := range errs {
		if err == nil {
			admitted = append(admitted, hosts[i])
			continue
		}
		assert.Regexp(t, `^MachineRegistration `+ns+`/rate admits at most 2 new hosts per minute; retry in ([1-5]?[0-9]|60)s$`, err.Error())
	}
	require.Len(t, admitted, 2, "exactly the rate's worth of hosts get in: %v", errs)
	assert.Equal(t, 4.0, refusals("inventory_rate")-before)

	// During the same minute: the admitted hosts re-register, a new one is
	// refused.
	for _, h := range admitted {
		_, err := register(t, mr, host{id: h, update: true})
		require.NoError(t, err)
	}
	require.Error(t, registerFrom(mr, "52:54:00:d0:01:01", goodSource))
	onlyObjectsOf(t, ns, admitted...)
	grown := int64(heapInuse()) - int64(heap0)
	t.Logf("heap in use grew by %d KiB", grown>>10)
	assert.Less(t, grown, int64(8<<20))
	eventually(t, 10*time.Second, func() error {
		if n, msgs := refusedEvents(t, mr); n != 1 {
			return fmt.Errorf("%d RegistrationRefused events: %q", n, msgs)
		}
		return nil
	})

	// The window slides: a minute after those creations a host would be
	// admitted (asked of the server's cache, not waited for).
	cur, err := registrations.Get(ns, "rate", metav1.GetOptions{})
	require.NoError(t, err)
	ok, msg := srv.AdmitAt(cur, time.Now())
	assert.False(t, ok)
	assert.Contains(t, msg, "admits at most 2 new hosts per minute")
	ok, msg = srv.AdmitAt(cur, time.Now().Add(62*time.Second))
	assert.True(t, ok, msg)
}
