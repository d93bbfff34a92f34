// Package leader runs a function only while this process holds a Lease.
//
// It wraps client-go's leader election rather than wrangler's leader.RunOrDie:
// that one uses the bare hostname as identity (two processes on one host would
// both lead), never releases the lease on shutdown (a clean restart waits a full
// lease duration), and exits the process from inside the library.
package leader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ErrLost is returned when leadership is lost while the context is still live.
var ErrLost = errors.New("leader election lost")

type Options struct {
	Namespace     string
	Name          string
	Identity      string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// OnLeading is told when this process starts and stops leading.
	OnLeading func(leading bool)
}

// DefaultIdentity is the hostname (the pod name in a cluster) plus a random
// suffix, so two processes on one host never share an identity.
func DefaultIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "elemental-operator"
	}
	return host + "_" + rand.String(8)
}

// Run blocks until ctx is done (returns nil) or leadership is lost (returns
// ErrLost). run is called with a context cancelled when leadership ends.
func Run(ctx context.Context, client kubernetes.Interface, opts Options, run func(ctx context.Context)) error {
	if opts.Identity == "" {
		opts.Identity = DefaultIdentity()
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.Namespace, Name: opts.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity},
	}
	log := logrus.WithFields(logrus.Fields{"lease": opts.Namespace + "/" + opts.Name, "identity": opts.Identity})
	notify := opts.OnLeading
	if notify == nil {
		notify = func(bool) {}
	}
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            opts.Name,
		LeaseDuration:   opts.LeaseDuration,
		RenewDeadline:   opts.RenewDeadline,
		RetryPeriod:     opts.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				log.Info("started leading")
				notify(true)
				run(lctx)
			},
			OnStoppedLeading: func() {
				log.Info("stopped leading")
				notify(false)
			},
			OnNewLeader: func(id string) {
				if id != opts.Identity {
					log.WithField("leader", id).Info("following")
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	log.Info("waiting for the lease")
	elector.Run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return ErrLost
}
