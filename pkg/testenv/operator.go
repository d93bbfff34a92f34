package testenv

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/elemental-operator/elemental-operator/pkg/operator"
)

// RunOperator runs the operator in-process against cfg, without leader
// election, CRD installation or listeners unless mutate turns them on. The
// returned stop cancels it and reports how it ended.
func RunOperator(cfg *rest.Config, mutate func(*operator.Config)) (stop func() error) {
	c := operator.DefaultConfig()
	c.LeaderElect, c.InstallCRDs = false, false
	c.HealthAddr, c.MetricsAddr, c.RegistrationAddr = "", "", ""
	if mutate != nil {
		mutate(&c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- operator.RunWithConfig(ctx, c, cfg, "test") }()
	return func() error {
		cancel()
		return <-done
	}
}

// Eventually polls check every 50ms until it returns nil, failing the test
// with the last error after timeout.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	EventuallyEvery(t, timeout, 50*time.Millisecond, check)
}

// EventuallyEvery is Eventually with its own interval, for checks that are
// expensive themselves (listing every object of a large test).
func EventuallyEvery(t testing.TB, timeout, interval time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(interval)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

// Consistently checks every 50ms for duration that check keeps returning
// nil, failing the test at the first error: the way to assert that something
// does not happen (a stray write, a second claim) instead of a bare sleep.
func Consistently(t testing.TB, duration time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(duration)
	for {
		if err := check(); err != nil {
			t.Fatalf("condition broken within %s: %v", duration, err)
		}
		if !time.Now().Before(deadline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
