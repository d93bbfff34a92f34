package controllers

import (
	"context"
	"fmt"

	"github.com/rancher/wrangler/v3/pkg/start"
	"github.com/sirupsen/logrus"

	"github.com/elemental-operator/elemental-operator/pkg/crdwatch"
)

// pending is what waits for kinds to be served: register wires its handlers
// (on the shared factory) and returns any starters of its own.
type pending struct {
	what     string
	kinds    []crdwatch.Kind
	register func(context.Context) []start.Starter
}

// whenServed defers register until kinds are served. It runs on the leader
// only: Start watches the CRDs, not Register.
func (a *AppContext) whenServed(what string, kinds []crdwatch.Kind, register func(context.Context) []start.Starter) {
	logrus.WithField("kinds", fmt.Sprint(kinds)).Warn(what + " not served: starting it when its CRDs are installed")
	a.later = append(a.later, pending{what: what, kinds: kinds, register: register})
}

// startLater watches the CRDs of every pending registration; when they are
// served, it registers the handlers and starts the new caches and workers
// (the shared factory starts only what is not running yet).
func (a *AppContext) startLater(ctx context.Context, workers int) error {
	for _, p := range a.later {
		err := crdwatch.WhenServed(ctx, a.cfg, p.kinds, func(ctx context.Context) {
			a.laterMu.Lock()
			defer a.laterMu.Unlock()
			log := logrus.WithField("kinds", fmt.Sprint(p.kinds))
			starters := append(append([]start.Starter{}, a.factories...), p.register(ctx)...)
			if err := start.All(ctx, workers, starters...); err != nil {
				log.WithError(err).Error(p.what + " could not be started")
				return
			}
			log.Info(p.what + " started: its CRDs are installed")
		})
		if err != nil {
			return fmt.Errorf("watching the CRDs of %s: %w", p.what, err)
		}
	}
	return nil
}
