package e2e

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// 200 selectors race for 150 inventories, with two replicas of the operator
// and the leader killed halfway: exactly 150 pairs, 50 waiting with a reason,
// never a double claim.
func TestTwoReplicasMoreSelectorsThanInventories(t *testing.T) {
	ns := namespace(t)
	first := startOperator(t, ns)
	startOperator(t, ns)
	stop := watchInvariants(t, ns)
	createInventories(t, ns, 150)
	createMachines(t, ns, 0, 100)
	time.Sleep(2 * time.Second) // pacing the load: let the adoption wave get under way before the kill
	first.kill()                // whoever leads, one replica dies mid-flight
	createMachines(t, ns, 100, 100)
	eventually(t, 3*time.Minute, func() error {
		st := observe(t, ns)
		if len(st.pairs) != 150 || st.ready != 150 || st.waiting != 50 {
			return fmt.Errorf("%d pairs, %d ready, %d waiting", len(st.pairs), st.ready, st.waiting)
		}
		return nil
	})
	stop()
	st := observe(t, ns)
	assert.Empty(t, st.doubleHeld)
	assert.Empty(t, st.doubleClaim)
}

// The operator is SIGKILLed at random moments during 300 adoptions and
// restarted each time: it converges, and nothing is ever held twice.
func TestKilledAndRestartedDuringAdoptions(t *testing.T) {
	ns := namespace(t)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	op := startOperator(t, ns)
	stop := watchInvariants(t, ns)
	createInventories(t, ns, 300)
	created := make(chan struct{})
	go func() { defer close(created); createMachines(t, ns, 0, 300) }()
	kills := 0
	// After a SIGKILL the lease is not released: the next process waits for
	// it to expire (4s here), so kills come every 1-5s, ten of them.
	for kills < 10 {
		time.Sleep(time.Duration(1000+rng.Intn(4000)) * time.Millisecond)
		st := observe(t, ns)
		if st.ready == 300 {
			break
		}
		op.kill()
		kills++
		op = startOperator(t, ns)
	}
	<-created
	t.Logf("killed the operator %d times", kills)
	eventually(t, 3*time.Minute, func() error {
		st := observe(t, ns)
		if len(st.pairs) != 300 || st.ready != 300 {
			return fmt.Errorf("%d pairs, %d ready", len(st.pairs), st.ready)
		}
		return nil
	})
	stop()
	assert.Greater(t, kills, 0)
}
