package machineregistration_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

var tokenRE = regexp.MustCompile(`^[bcdfghjklmnpqrstvwxz2456789]{54}$`)

// The tests share the cluster-scoped server-url Setting, so they run in order.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	ns, err := env.NewNamespace(ctx, "mr")
	require.NoError(t, err)

	// No server-url yet: not ready, but the token is already generated.
	setSetting(t, "server-url", "", "")
	newRegistration(t, ns, "fire", elementalv1.MachineRegistrationSpec{})
	mr := waitReady(t, ns, "fire", metav1.ConditionFalse, elementalv1.ReasonMissingTokenOrServerURL)
	assert.Regexp(t, tokenRE, mr.Status.RegistrationToken)
	token := mr.Status.RegistrationToken

	// The effective value (default when value is empty) makes it ready.
	setSetting(t, "server-url", "", "https://default.example/")
	mr = waitReady(t, ns, "fire", metav1.ConditionTrue, elementalv1.ReasonSuccessfullyCreated)
	assert.Equal(t, "https://default.example/elemental/registration/"+token, mr.Status.RegistrationURL)

	// A server-url change refreshes the URL; the token never changes.
	setSetting(t, "server-url", "https://rancher.example", "https://default.example")
	eventually(t, 20e9, func() error {
		mr, err = registrations.Get(ns, "fire", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if mr.Status.RegistrationURL != "https://rancher.example/elemental/registration/"+token {
			return fmt.Errorf("url %s", mr.Status.RegistrationURL)
		}
		return nil
	})
	assert.Nil(t, mr.Status.ServiceAccountRef)

	var reasons []string
	for _, e := range events(t, ns, "fire") {
		reasons = append(reasons, e.Reason)
	}
	assert.Contains(t, reasons, elementalv1.ReasonMissingTokenOrServerURL)
	assert.Contains(t, reasons, "Ready")
}

func TestStaticTokenMustBeUnique(t *testing.T) {
	ctx := context.Background()
	setSetting(t, "server-url", "https://rancher.example", "")
	ns1, err := env.NewNamespace(ctx, "mr")
	require.NoError(t, err)
	ns2, err := env.NewNamespace(ctx, "mr")
	require.NoError(t, err)

	newRegistration(t, ns1, "first", elementalv1.MachineRegistrationSpec{Token: "static-token-1"})
	mr := waitReady(t, ns1, "first", metav1.ConditionTrue, elementalv1.ReasonSuccessfullyCreated)
	assert.Equal(t, "static-token-1", mr.Status.RegistrationToken)

	newRegistration(t, ns2, "second", elementalv1.MachineRegistrationSpec{Token: "static-token-1"})
	mr = waitReady(t, ns2, "second", metav1.ConditionFalse, elementalv1.ReasonDuplicateToken)
	assert.Empty(t, mr.Status.RegistrationToken)
	// Events are recorded asynchronously.
	eventually(t, 10*time.Second, func() error {
		for _, e := range events(t, ns2, "second") {
			if e.Reason == elementalv1.ReasonDuplicateToken && e.Type == "Warning" {
				return nil
			}
		}
		return fmt.Errorf("no DuplicateToken event yet")
	})

	// The first one moves to another token: the second gets it.
	first, err := registrations.Get(ns1, "first", metav1.GetOptions{})
	require.NoError(t, err)
	first.Spec.Token = "static-token-2"
	_, err = registrations.Update(first)
	require.NoError(t, err)
	mr = waitReady(t, ns1, "first", metav1.ConditionTrue, elementalv1.ReasonSuccessfullyCreated)
	eventually(t, 20e9, func() error {
		mr, err = registrations.Get(ns1, "first", metav1.GetOptions{})
		if err != nil || mr.Status.RegistrationToken != "static-token-2" {
			return fmt.Errorf("token %v %v", mr.Status.RegistrationToken, err)
		}
		return nil
	})
	mr = waitReady(t, ns2, "second", metav1.ConditionTrue, elementalv1.ReasonSuccessfullyCreated)
	assert.Equal(t, "https://rancher.example/elemental/registration/static-token-1", mr.Status.RegistrationURL)
}

func TestInvalidConfiguration(t *testing.T) {
	ctx := context.Background()
	setSetting(t, "server-url", "https://rancher.example", "")
	ns, err := env.NewNamespace(ctx, "mr")
	require.NoError(t, err)
	spec := elementalv1.MachineRegistrationSpec{}
	spec.Config.Elemental.Registration.Auth = "password"
	newRegistration(t, ns, "bad-auth", spec)
	waitReady(t, ns, "bad-auth", metav1.ConditionFalse, elementalv1.ReasonInvalidConfiguration)

	spec = elementalv1.MachineRegistrationSpec{}
	spec.Config.Network.Configurator = "nmc"
	newRegistration(t, ns, "ipam", spec)
	waitReady(t, ns, "ipam", metav1.ConditionFalse, elementalv1.ReasonUnsupportedNetworkConfig)

	// Fixing the spec makes it ready.
	mr, err := registrations.Get(ns, "bad-auth", metav1.GetOptions{})
	require.NoError(t, err)
	mr.Spec.Config.Elemental.Registration.Auth = "mac"
	_, err = registrations.Update(mr)
	require.NoError(t, err)
	waitReady(t, ns, "bad-auth", metav1.ConditionTrue, elementalv1.ReasonSuccessfullyCreated)
}
