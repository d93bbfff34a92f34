package machineinventory_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
	"github.com/elemental-operator/elemental-operator/pkg/plans"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// TestRealSystemAgent runs the real rancher-system-agent v0.3.4, sandboxed, in
// remote mode with the inventory's own token.
func TestRealSystemAgent(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	mi := newInventory(t, ns, "host-a", nil)
	other := newInventory(t, ns, "host-b", nil)
	getSecret(t, ns, "host-a")
	getSecret(t, ns, "host-b")
	require.NoError(t, credentials.Ensure(ctx, env.Client, mi))
	require.NoError(t, credentials.Ensure(ctx, env.Client, other))
	token, expires, err := credentials.Token(ctx, env.Client, mi, 24*time.Hour)
	require.NoError(t, err)
	assert.True(t, expires.After(time.Now().Add(23*time.Hour)))

	startAgent := func() *testenv.Agent {
		a, err := testenv.StartAgent(testenv.AgentOptionsFor(env.Config, token, ns, "host-a"))
		require.NoError(t, err)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("agent output:\n%s", a.Output())
			}
			a.Stop()
		})
		return a
	}
	agent := startAgent()

	t.Run("the empty plan is applied and the inventory turns Ready", func(t *testing.T) {
		mi := waitReason(t, ns, "host-a", elementalv1.ConditionReady, metav1.ConditionTrue, elementalv1.ReasonPlanSuccessfullyApplied, 90*time.Second)
		assert.Equal(t, "Available", mi.Status.Phase)
		assert.Equal(t, plans.EmptyChecksum, string(getSecret(t, ns, "host-a").Data["applied-checksum"]))
	})

	var failing []byte
	t.Run("a failing plan shows its output although an older checksum stays applied", func(t *testing.T) {
		// stdout: agent v0.3.4 drops stderr of combined output (its buffer is copied by value).
		failing = []byte(`{"instructions":[{"name":"break","command":"sh","args":["-c","echo disk on fire; exit 3"],"saveOutput":true}]}`)
		writePlan(t, ns, "host-a", failing, elementalv1.PlanTypeBootstrap)
		mi := waitReason(t, ns, "host-a", elementalv1.ConditionPlanReady, metav1.ConditionFalse, elementalv1.ReasonPlanFailure, 90*time.Second)
		assert.Equal(t, elementalv1.PlanFailed, mi.Status.Plan.State)
		assert.Equal(t, plans.EmptyChecksum, mi.Status.Plan.AppliedChecksum, "the agent keeps the old applied-checksum")
		assert.GreaterOrEqual(t, mi.Status.Plan.FailureCount, 1)
		assert.Contains(t, condition(mi, elementalv1.ConditionPlanReady).Message, "disk on fire")
		assert.Equal(t, metav1.ConditionFalse, condition(mi, elementalv1.ConditionReady).Status)
	})

	t.Run("fixing the plan recovers", func(t *testing.T) {
		fixed := []byte(`{"files":[{"path":"/var/lib/elemental/marker","content":"b2s=","permissions":"0600"}],` +
			`"instructions":[{"name":"check","command":"sh","args":["-c","test \"$(cat /var/lib/elemental/marker)\" = ok && echo fine"],"saveOutput":true}]}`)
		writePlan(t, ns, "host-a", fixed, elementalv1.PlanTypeBootstrap)
		mi := waitReason(t, ns, "host-a", elementalv1.ConditionReady, metav1.ConditionTrue, elementalv1.ReasonPlanSuccessfullyApplied, 90*time.Second)
		assert.Equal(t, plans.Checksum(fixed), mi.Status.Plan.AppliedChecksum)
	})

	t.Run("a hand-edited plan is restored and the agent applies the recorded one", func(t *testing.T) {
		recorded := getSecret(t, ns, "host-a").Data["plan"]
		evil := `{"files":[{"path":"/var/lib/elemental/evil","content":"cHdu","permissions":"0600"}]}`
		_, err := env.Client.CoreV1().Secrets(ns).Patch(ctx, "host-a", types.MergePatchType,
			[]byte(fmt.Sprintf(`{"data":{"plan":%q}}`, base64.StdEncoding.EncodeToString([]byte(evil)))), metav1.PatchOptions{})
		require.NoError(t, err)
		waitReason(t, ns, "host-a", elementalv1.ConditionPlanTampered, metav1.ConditionTrue, elementalv1.ReasonPlanRestored, 30*time.Second)
		assert.Equal(t, recorded, getSecret(t, ns, "host-a").Data["plan"])
		// Whether or not the agent ran the edited plan meanwhile, it ends on the recorded one.
		eventually(t, 90*time.Second, func() error {
			s := getSecret(t, ns, "host-a")
			if got := string(s.Data["applied-checksum"]); got != plans.Checksum(recorded) {
				return fmt.Errorf("applied-checksum %s", got)
			}
			return nil
		})
		waitReason(t, ns, "host-a", elementalv1.ConditionReady, metav1.ConditionTrue, elementalv1.ReasonPlanSuccessfullyApplied, 30*time.Second)
	})

	t.Run("restarting the agent is harmless", func(t *testing.T) {
		before := getSecret(t, ns, "host-a")
		agent.Stop()
		agent = startAgent()
		// The restarted agent re-runs the plan once and writes back again.
		eventually(t, 90*time.Second, func() error {
			s := getSecret(t, ns, "host-a")
			if s.ResourceVersion == before.ResourceVersion {
				return fmt.Errorf("no write-back from the restarted agent yet")
			}
			return nil
		})
		mi := waitReason(t, ns, "host-a", elementalv1.ConditionReady, metav1.ConditionTrue, elementalv1.ReasonPlanSuccessfullyApplied, 30*time.Second)
		assert.Equal(t, string(before.Data["applied-checksum"]), mi.Status.Plan.AppliedChecksum)
		assert.False(t, agent.Exited())
	})

	t.Run("the token reaches only its own plan Secret", func(t *testing.T) {
		hostCfg := &rest.Config{Host: env.Config.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}}
		host := kubernetes.NewForConfigOrDie(hostCfg)
		secrets := host.CoreV1().Secrets(ns)

		own, err := secrets.Get(ctx, "host-a", metav1.GetOptions{})
		require.NoError(t, err, "get own plan secret")
		_, err = secrets.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=host-a"})
		require.NoError(t, err, "list own plan secret by name, as the agent does")
		own.Data["probe-statuses"] = []byte("{}")
		_, err = secrets.Update(ctx, own, metav1.UpdateOptions{})
		require.NoError(t, err, "update own plan secret")

		forbidden := map[string]error{}
		_, forbidden["list all secrets"] = secrets.List(ctx, metav1.ListOptions{})
		_, forbidden["get another inventory's secret"] = secrets.Get(ctx, "host-b", metav1.GetOptions{})
		_, forbidden["create a secret"] = secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
		forbidden["delete own secret"] = secrets.Delete(ctx, "host-a", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		_, forbidden["create a configmap"] = host.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
		_, forbidden["list secrets in another namespace"] = host.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
		_, forbidden["read its own service account"] = host.CoreV1().ServiceAccounts(ns).Get(ctx, credentials.Name("host-a"), metav1.GetOptions{})
		for what, err := range forbidden {
			assert.True(t, apierrors.IsForbidden(err), "%s: want Forbidden, got %v", what, err)
		}

		// The admission policy: the agent's token writes back, never programs.
		update := func(edit func(*corev1.Secret)) error {
			s, err := secrets.Get(ctx, "host-a", metav1.GetOptions{})
			if err != nil {
				return err
			}
			edit(s)
			_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
			return err
		}
		refused := map[string]error{
			"rewrite data.plan":      update(func(s *corev1.Secret) { s.Data["plan"] = []byte(`{"instructions":[{"name":"x","command":"id"}]}`) }),
			"forge the plan type":    update(func(s *corev1.Secret) { s.Annotations[elementalv1.PlanTypeAnnotation] = elementalv1.PlanTypeEmpty }),
			"add a label":            update(func(s *corev1.Secret) { s.Labels["pwned"] = "true" }),
			"drop the managed label": update(func(s *corev1.Secret) { delete(s.Labels, elementalv1.ManagedLabel) }),
		}
		for what, err := range refused {
			assert.True(t, apierrors.IsForbidden(err), "%s: want Forbidden from the admission policy, got %v", what, err)
		}
		require.NoError(t, update(func(s *corev1.Secret) { s.Data["probe-statuses"] = []byte(`{"x":{}}`) }), "a write-back key")
	})

	t.Run("rotating the credential cuts the agent off until it gets a new token", func(t *testing.T) {
		old := token
		_, err := inventories.Patch(ns, "host-a", types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"`+elementalv1.RotateCredentialAnnotation+`":"1"}}}`))
		require.NoError(t, err)
		host := kubernetes.NewForConfigOrDie(&rest.Config{Host: env.Config.Host, BearerToken: old, TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}})
		eventually(t, 30*time.Second, func() error {
			_, err := host.CoreV1().Secrets(ns).Get(ctx, "host-a", metav1.GetOptions{})
			if apierrors.IsUnauthorized(err) {
				return nil
			}
			return fmt.Errorf("want Unauthorized, got %v", err)
		})
		// The agent reads its token once: restarted with the revoked one it
		// exits at its start-up check (systemd would restart it in a loop).
		agent.Stop()
		agent = startAgent()
		eventually(t, 60*time.Second, func() error {
			if !agent.Exited() {
				return fmt.Errorf("the agent still runs with a revoked token")
			}
			return nil
		})
		// What the host's next registration gives it: a token of the new
		// ServiceAccount; restarted with it, the agent applies plans.
		mi, err := inventories.Get(ns, "host-a", metav1.GetOptions{})
		require.NoError(t, err)
		rotated, err := credentials.Rotate(ctx, env.Client, mi)
		require.NoError(t, err)
		assert.False(t, rotated, "the controller rotated already")
		token, _, err = credentials.Token(ctx, env.Client, mi, 24*time.Hour)
		require.NoError(t, err)
		agent.Stop()
		agent = startAgent()
		after := []byte(`{"instructions":[{"name":"again","command":"sh","args":["-c","echo rotated"],"saveOutput":true}]}`)
		writePlan(t, ns, "host-a", after, elementalv1.PlanTypeBootstrap)
		eventually(t, 90*time.Second, func() error {
			mi, err := inventories.Get(ns, "host-a", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if mi.Status.Plan == nil || mi.Status.Plan.AppliedChecksum != plans.Checksum(after) {
				return fmt.Errorf("the plan written after the rotation is not applied yet: %+v", mi.Status.Plan)
			}
			return nil
		})
		assert.False(t, agent.Exited())
	})

	t.Run("deleting the inventory revokes the token", func(t *testing.T) {
		require.NoError(t, inventories.Delete(ns, "host-a", nil))
		waitGone(t, 30*time.Second, func() error { _, err := inventories.Get(ns, "host-a", metav1.GetOptions{}); return err })
		host := kubernetes.NewForConfigOrDie(&rest.Config{Host: env.Config.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}})
		eventually(t, 30*time.Second, func() error {
			_, err := host.CoreV1().Secrets(ns).Get(ctx, "host-b", metav1.GetOptions{})
			if apierrors.IsUnauthorized(err) {
				return nil
			}
			return fmt.Errorf("want Unauthorized, got %v", err)
		})
	})
}
