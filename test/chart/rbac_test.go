package chart

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chartutil"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	"github.com/elemental-operator/elemental-operator/pkg/credentials"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/metrics"
	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
	"github.com/elemental-operator/elemental-operator/pkg/server"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// permission is one (group, resource[/subresource], verb) the API server
// authorizes; namespace is set for the operator namespace's Role.
type permission struct{ group, resource, verb string }

func (p permission) String() string {
	g := p.group
	if g == "" {
		g = "core"
	}
	return g + "/" + p.resource + ":" + p.verb
}

// unexercised lists the granted permissions the flow below may not use, each
// with the code path that needs it. Any other granted permission the flow
// never uses fails the test: the chart must not grant more than the code does.
var unexercised = map[permission]string{
	{"", "secrets", "update"}:                                   "never called: held so per-host Roles (get/list/watch/update/patch on one plan Secret) pass the RBAC escalation check",
	{"", "events", "patch"}:                                     "the event recorder patches a repeated event instead of creating it",
	{"elemental.cattle.io", "machineinventories", "patch"}:      "the registration server patches labels/annotations at re-registration",
	{"elemental.cattle.io", "machineinventoryselectors", "get"}: "the selector controller reads a selector live when its cache is behind (a race)",
	{"", "serviceaccounts", "get"}:                              "credentials.Ensure reads an existing ServiceAccount on AlreadyExists",
	{"coordination.k8s.io", "leases", "update"}:                 "lease renewal (the flow may finish within one lease period)",
}

func init() {
	// Only while the Cluster API or Setting CRDs are missing at start-up (pkg/crdwatch).
	unexercised[permission{"apiextensions.k8s.io", "customresourcedefinitions", "list"}] = "watching a missing optional CRD (pkg/crdwatch)"
	unexercised[permission{"apiextensions.k8s.io", "customresourcedefinitions", "watch"}] = "watching a missing optional CRD (pkg/crdwatch)"
}

// expectedForbidden: the operator tries these and ignores Forbidden.
var expectedForbidden = map[permission]string{}

// recorder wraps the operator's transport and records every resource request.
type recorder struct {
	mu        sync.Mutex
	used      map[permission]int
	forbidden map[string]int
	info      *request.RequestInfoFactory
}

func newRecorder() *recorder {
	return &recorder{
		used: map[permission]int{}, forbidden: map[string]int{},
		info: &request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")},
	}
}

func (r *recorder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		ri, ierr := r.info.NewRequestInfo(req)
		if ierr != nil || !ri.IsResourceRequest {
			return resp, err
		}
		res := ri.Resource
		if ri.Subresource != "" {
			res += "/" + ri.Subresource
		}
		p := permission{ri.APIGroup, res, ri.Verb}
		r.mu.Lock()
		defer r.mu.Unlock()
		if err == nil && resp.StatusCode == http.StatusForbidden {
			r.forbidden[fmt.Sprintf("%s ns=%q name=%q", p, ri.Namespace, ri.Name)]++
		} else if err == nil {
			r.used[p]++
		}
		return resp, err
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// forbiddenLogs fails the test on any log line mentioning Forbidden; it also
// picks up the registration server's address.
type forbiddenLogs struct {
	mu    sync.Mutex
	lines []string
	addr  string
}

func (h *forbiddenLogs) registrationAddr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addr
}

func (h *forbiddenLogs) Levels() []logrus.Level { return logrus.AllLevels }
func (h *forbiddenLogs) Fire(e *logrus.Entry) error {
	if e.Message == "registration server listening" {
		h.mu.Lock()
		h.addr = fmt.Sprint(e.Data["addr"])
		h.mu.Unlock()
	}
	line, _ := e.String()
	if strings.Contains(strings.ToLower(line), "forbidden") {
		h.mu.Lock()
		h.lines = append(h.lines, line)
		h.mu.Unlock()
	}
	return nil
}

// TestOperatorRunsWithExactlyTheChartRBAC applies the chart's ServiceAccount,
// ClusterRoles, Role and bindings, runs the operator in-process with only a
// TokenRequest token of that ServiceAccount (configured from the rendered
// Deployment's environment, leader election on, in the release namespace),
// and drives onboarding and provisioning. Every request is recorded: none may
// be Forbidden, and every granted permission must be used (or be listed in
// unexercised with its reason).
func TestOperatorRunsWithExactlyTheChartRBAC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Next to Rancher, in both modes: the operator watches the APIService
	// Secret (the tunnel) and serves its own listener, which the flow uses.
	r, err := renderFor(operatorChart, chartutil.Values{"registration": map[string]interface{}{"mode": "both"}}, withKinds(rancherKinds...))
	require.NoError(t, err)
	granted := applyRBAC(t, ctx, r)

	// A token for the chart's ServiceAccount, and nothing else.
	tr, err := env.Client.CoreV1().ServiceAccounts(releaseNamespace).CreateToken(ctx, "elemental-operator",
		&authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	require.NoError(t, err)
	saCfg := &rest.Config{Host: env.Config.Host, BearerToken: tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}, QPS: 500, Burst: 1000}
	rec := newRecorder()
	saCfg.Wrap(rec.wrap)

	cfg := configFromDeployment(t, r)
	require.Equal(t, releaseNamespace, cfg.Namespace)
	require.True(t, cfg.LeaderElect)
	require.False(t, cfg.InstallCRDs)
	// Loopback ports: other test packages run in parallel.
	cfg.HealthAddr, cfg.MetricsAddr, cfg.RegistrationAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"

	logs := &forbiddenLogs{}
	operator.RouteKlogToLogrus()
	logrus.AddHook(logs)
	opCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- operator.RunWithConfig(opCtx, cfg, saCfg, "test") }()
	stopped := false
	stopOperator := func() {
		if !stopped {
			stopped = true
			stop()
			require.NoError(t, <-done)
		}
	}
	defer stopOperator()

	runFlow(t, ctx, saCfg, logs.registrationAddr)

	// The metrics endpoint carries the operator's named series, with values
	// from the flow that just ran.
	rr := httptest.NewRecorder()
	metrics.Handler().ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	exposition := rr.Body.String()
	for _, series := range []string{
		`elemental_operator_registrations_total{auth="mac",result="registered"}`,
		`elemental_operator_adoption_duration_seconds_count`,
		`elemental_operator_plans_total{result="applied",type="bootstrap"}`,
		`elemental_operator_plans_total{result="applied",type="empty"}`,
		`elemental_operator_inventories{namespace=`,
		`elemental_operator_reconcile_errors_total{controller="machineinventoryselector"}`,
		`elemental_operator_leader 1`,
	} {
		assert.Contains(t, exposition, series)
	}
	for _, line := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(line, "elemental_operator_adoption_duration_seconds_count") || strings.HasPrefix(line, `elemental_operator_registrations_total{auth="mac",result="registered"}`) {
			assert.NotEqual(t, "0", line[strings.LastIndexByte(line, ' ')+1:], line)
		}
	}

	stopOperator()
	logs.mu.Lock()
	assert.Empty(t, logs.lines, "the operator logged Forbidden errors")
	logs.mu.Unlock()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for call := range rec.forbidden {
		p := parsePermission(call)
		if _, ok := expectedForbidden[p]; !ok {
			t.Errorf("forbidden: %s", call)
		}
	}
	var missing, used []string
	for p := range granted {
		// Reflectors list through a streaming watch (sendInitialEvents) where
		// the server supports it, with a plain LIST otherwise: both are needed.
		if rec.used[p] > 0 || (p.verb == "list" && rec.used[permission{p.group, p.resource, "watch"}] > 0) {
			used = append(used, p.String())
			continue
		}
		if _, ok := unexercised[p]; !ok {
			missing = append(missing, p.String())
		}
	}
	sort.Strings(missing)
	sort.Strings(used)
	assert.Empty(t, missing, "granted by the chart but never used by the operator (remove them, or justify them in unexercised)")
	t.Logf("permissions used: %s", strings.Join(used, " "))
}

func parsePermission(call string) permission {
	f := strings.Fields(call)[0] // group/resource:verb
	gr, verb, _ := strings.Cut(f, ":")
	g, res, _ := strings.Cut(gr, "/")
	if g == "core" {
		g = ""
	}
	return permission{g, res, verb}
}

// applyRBAC creates the chart's ServiceAccount, roles and bindings for real
// and returns the permissions the operator's ServiceAccount is granted.
func applyRBAC(t *testing.T, ctx context.Context, r *rendered) map[permission]bool {
	t.Helper()
	granted := map[permission]bool{}
	add := func(rules []rbacv1.PolicyRule) {
		for _, rule := range rules {
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						require.NotEqual(t, "*", v, "wildcard verb on %s", res)
						require.NotEqual(t, "*", res, "wildcard resource")
						granted[permission{g, res, v}] = true
					}
				}
			}
		}
	}
	conv := func(u *unstructured.Unstructured, into interface{}) {
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into))
	}
	for _, u := range r.objects {
		if _, hook := u.GetAnnotations()["helm.sh/hook"]; hook {
			continue
		}
		var err error
		switch u.GetKind() {
		case "ServiceAccount":
			var o corev1.ServiceAccount
			conv(u, &o)
			_, err = env.Client.CoreV1().ServiceAccounts(u.GetNamespace()).Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRole":
			var o rbacv1.ClusterRole
			conv(u, &o)
			if o.Name == "elemental-operator" {
				add(o.Rules)
			}
			_, err = env.Client.RbacV1().ClusterRoles().Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRoleBinding":
			var o rbacv1.ClusterRoleBinding
			conv(u, &o)
			_, err = env.Client.RbacV1().ClusterRoleBindings().Create(ctx, &o, metav1.CreateOptions{})
		case "Role":
			var o rbacv1.Role
			conv(u, &o)
			add(o.Rules)
			_, err = env.Client.RbacV1().Roles(u.GetNamespace()).Create(ctx, &o, metav1.CreateOptions{})
		case "RoleBinding":
			var o rbacv1.RoleBinding
			conv(u, &o)
			_, err = env.Client.RbacV1().RoleBindings(u.GetNamespace()).Create(ctx, &o, metav1.CreateOptions{})
		default:
			continue
		}
		require.NoError(t, err, "%s %s", u.GetKind(), u.GetName())
	}
	require.NotEmpty(t, granted)
	return granted
}

// configFromDeployment builds the operator Config exactly as the container
// would: defaults, then the Deployment's ELEMENTAL_OPERATOR_* variables.
func configFromDeployment(t *testing.T, r *rendered) operator.Config {
	t.Helper()
	cfg := operator.DefaultConfig()
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	cfg.BindFlags(fs)
	byEnv := operatorFlags()
	for _, e := range deployment(t, r).Spec.Template.Spec.Containers[0].Env {
		if !strings.HasPrefix(e.Name, operator.EnvPrefix) {
			continue
		}
		value := e.Value
		if e.ValueFrom != nil {
			require.Equal(t, "metadata.namespace", e.ValueFrom.FieldRef.FieldPath, e.Name)
			value = releaseNamespace
		}
		name, ok := byEnv[e.Name]
		require.True(t, ok, "%s is no operator flag", e.Name)
		require.NoError(t, fs.Set(name, value), e.Name)
	}
	require.NoError(t, cfg.Validate())
	return cfg
}

// runFlow: a MachineRegistration becomes Ready; hosts are onboarded as the
// registration server does it (inventory with finalizer, per-host
// credentials and token, all through the operator's own ServiceAccount);
// Cluster API machines claim them; a scale-down releases one inventory, a
// Delete-policy one is deleted, and an admin deletes the last one.
func runFlow(t *testing.T, ctx context.Context, saCfg *rest.Config, registrationAddr func() string) {
	ns, err := env.NewNamespace(ctx, "rbac")
	require.NoError(t, err)
	testenv.RunSimulatedAgents(ctx, env.Client, ns, 4)
	rancher, err := testenv.NewSimulatedRancher(env.Config)
	require.NoError(t, err)
	admin, err := elementalctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	mrs := admin.Elemental().V1beta1().MachineRegistration()
	inventories := admin.Elemental().V1beta1().MachineInventory()
	selectors := admin.Elemental().V1beta1().MachineInventorySelector()

	// Rancher's server-url Setting, read by the operator.
	mgmt, err := mgmtctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	_, err = mgmt.Management().V3().Setting().Create(&mgmtv3.Setting{ObjectMeta: metav1.ObjectMeta{Name: "server-url"}, Value: "https://rancher.example.com"})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	_, err = mrs.Create(&elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fire-nodes"}})
	require.NoError(t, err)
	eventually(t, time.Minute, func() error {
		mr, err := mrs.Get(ns, "fire-nodes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !strings.HasPrefix(mr.Status.RegistrationURL, "https://rancher.example.com/elemental/registration/") {
			return fmt.Errorf("registrationURL %q", mr.Status.RegistrationURL)
		}
		return nil
	})

	// Onboarding through the operator's registration server (PLAIN auth):
	// a first registration and a re-registration of the same host.
	registerHost(t, ctx, ns, registrationAddr)

	// More hosts onboarded the way the registration server does it, under the
	// operator's ServiceAccount, with the annotations the flow needs.
	saK8s, err := kubernetes.NewForConfig(saCfg)
	require.NoError(t, err)
	saElemental, err := elementalctl.NewFactoryFromConfig(saCfg)
	require.NoError(t, err)
	hosts := map[string]map[string]string{
		"host-release": {"pool": "release"},
		"host-delete":  {"pool": "delete"},
		"host-admin":   {"pool": "admin"},
	}
	for _, name := range sortedKeys(hosts) {
		annotations := map[string]string{elementalv1.SkipResetAnnotation: "true"}
		if name == "host-delete" {
			annotations[elementalv1.ReleasePolicyAnnotation] = "Delete"
		}
		mi, err := saElemental.Elemental().V1beta1().MachineInventory().Create(&elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, Labels: hosts[name], Annotations: annotations,
			Finalizers: []string{elementalv1.MachineInventoryFinalizer},
		}})
		require.NoError(t, err)
		require.NoError(t, credentials.Ensure(ctx, saK8s, mi))
		_, _, err = credentials.Token(ctx, saK8s, mi, time.Hour)
		require.NoError(t, err)
	}
	eventually(t, time.Minute, func() error {
		for name := range hosts {
			mi, err := inventories.Get(ns, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if mi.Status.Plan == nil || mi.Status.Plan.AppliedChecksum == "" {
				return fmt.Errorf("%s: plan not acked yet", name)
			}
		}
		return nil
	})

	// The pool template: the operator writes its capacity status.
	templates := admin.Elemental().V1beta1().MachineInventorySelectorTemplate()
	_, err = templates.Create(&elementalv1.MachineInventorySelectorTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release-pool"},
		Spec: elementalv1.MachineInventorySelectorTemplateSpec{Template: elementalv1.MachineInventorySelectorTemplateResource{
			Spec: elementalv1.MachineInventorySelectorSpec{Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"pool": "release"}}},
		}},
	})
	require.NoError(t, err)
	eventually(t, time.Minute, func() error {
		mist, err := templates.Get(ns, "release-pool", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if mist.Status.MatchingInventories == 0 {
			return fmt.Errorf("template capacity not written yet")
		}
		return nil
	})

	// Provisioning: one machine per pool claims its host.
	for _, pool := range []string{"release", "delete"} {
		_, err := rancher.CreateMachine(ctx, ns, "m-"+pool, testenv.MachineOptions{
			Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"pool": pool}},
			Script:   "#!/bin/sh\necho bootstrap\n",
		})
		require.NoError(t, err)
	}
	for _, pool := range []string{"release", "delete"} {
		eventually(t, time.Minute, func() error {
			mis, err := selectors.Get(ns, "m-"+pool, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !mis.Status.Ready {
				return fmt.Errorf("selector m-%s not ready", pool)
			}
			return nil
		})
	}

	// Scale-down: CAPI deletes the selector, then the Machine.
	for _, pool := range []string{"release", "delete"} {
		require.NoError(t, selectors.Delete(ns, "m-"+pool, nil))
		eventually(t, time.Minute, func() error {
			if _, err := selectors.Get(ns, "m-"+pool, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("selector m-%s still there: %v", pool, err)
			}
			return nil
		})
		require.NoError(t, rancher.Machines.Delete(ns, "m-"+pool, nil))
	}
	eventually(t, time.Minute, func() error {
		mi, err := inventories.Get(ns, "host-release", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if mi.Status.Phase != "Available" || len(mi.OwnerReferences) != 0 {
			return fmt.Errorf("host-release: phase %s, owners %v", mi.Status.Phase, mi.OwnerReferences)
		}
		return nil
	})

	// An admin deletes a host: the finalizer removes its plan Secret and credentials.
	require.NoError(t, inventories.Delete(ns, "host-admin", nil))
	for _, name := range []string{"host-delete", "host-admin"} {
		eventually(t, time.Minute, func() error {
			if _, err := inventories.Get(ns, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("inventory %s still there: %v", name, err)
			}
			if _, err := env.Client.CoreV1().ServiceAccounts(ns).Get(ctx, credentials.Name(name), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("credentials of %s still there: %v", name, err)
			}
			return nil
		})
	}
}

// registerHost registers one host through the registration server the
// operator runs (under the chart's RBAC), twice, and waits for its agent to
// ack the inventory's plan.
func registerHost(t *testing.T, ctx context.Context, ns string, registrationAddr func() string) {
	t.Helper()
	admin, err := elementalctl.NewFactoryFromConfig(env.Config)
	require.NoError(t, err)
	mrs := admin.Elemental().V1beta1().MachineRegistration()
	spec := elementalv1.MachineRegistrationSpec{MachineName: "registered-${Random/Hex/6}"}
	spec.Config.Elemental.Registration.Auth = "mac"
	_, err = mrs.Create(&elementalv1.MachineRegistration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mac-nodes"}, Spec: spec})
	require.NoError(t, err)
	var token string
	eventually(t, time.Minute, func() error {
		mr, err := mrs.Get(ns, "mac-nodes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if token = mr.Status.RegistrationToken; token == "" || registrationAddr() == "" {
			return fmt.Errorf("no registration token or server yet")
		}
		return nil
	})
	tlsSecret, err := env.Client.CoreV1().Secrets(releaseNamespace).Get(ctx, server.GeneratedTLSSecret, metav1.GetOptions{})
	require.NoError(t, err, "the operator generates its registration TLS Secret in its namespace")
	req := client.Request{
		// The Setting points at Rancher; the host reaches this replica directly.
		URL:           "https://" + registrationAddr() + "/elemental/registration/" + token,
		CACert:        string(tlsSecret.Data["ca.crt"]),
		Authorization: client.PlainAuth("52:54:00:aa:bb:cc"),
		Smbios:        map[string]interface{}{"System Information": map[string]interface{}{"UUID": "uuid-rbac", "Manufacturer": "QEMU"}},
		Annotations:   map[string]string{"auth": "mac", "reg-version": "test"},
		Labels:        map[string]string{"pool": "registered"},
	}
	// The server's caches may trail the new token for a moment.
	eventually(t, 30*time.Second, func() error {
		_, err := client.Register(ctx, req)
		return err
	})
	req.Update = true
	_, err = client.Register(ctx, req)
	require.NoError(t, err, "re-registration")
	eventually(t, time.Minute, func() error {
		list, err := admin.Elemental().V1beta1().MachineInventory().List(ns, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, mi := range list.Items {
			if strings.HasPrefix(mi.Name, "registered-") && mi.Status.Plan != nil && mi.Status.Plan.AppliedChecksum != "" {
				return nil
			}
		}
		return fmt.Errorf("no registered inventory acked its plan yet (%d inventories)", len(list.Items))
	})
}
