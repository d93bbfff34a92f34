package chart

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/elemental-operator/elemental-operator/pkg/crds"
	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// TestLint is `helm lint --strict` for both charts and every values variant.
func TestLint(t *testing.T) {
	check := func(name, dir string, vals map[string]interface{}) {
		linter := lint.All(dir, vals, releaseNamespace, true)
		for _, m := range linter.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: %s", name, m)
			}
		}
	}
	check("elemental-operator-crds", crdChart, nil)
	for name, vals := range variants(t) {
		check("elemental-operator "+name, operatorChart, vals)
	}
}

// legacyCRDs are the upstream operator's kinds this operator does not act on;
// the CRD chart carries them so an upgrade from upstream deletes nothing.
var legacyCRDs = []string{
	"seedimages.elemental.cattle.io", "managedosimages.elemental.cattle.io",
	"managedosversions.elemental.cattle.io", "managedosversionchannels.elemental.cattle.io",
}

// TestCRDChartKeepsCRDs: uninstalling the CRD chart must never delete
// inventories; the chart ships our five CRDs (the embedded ones, unchanged)
// and the four legacy ones, every one with the keep policy, and as many as
// the upstream CRD chart, so that upgrading its release loses none.
func TestCRDChartKeepsCRDs(t *testing.T) {
	r, err := render(crdChart, nil)
	require.NoError(t, err)
	embedded, err := crds.Objects()
	require.NoError(t, err)
	want := append([]string{}, legacyCRDs...)
	for _, crd := range embedded {
		want = append(want, crd.Name)
	}
	var names []string
	for _, o := range r.objects {
		require.Equal(t, "CustomResourceDefinition", o.GetKind())
		assert.Equal(t, "keep", o.GetAnnotations()["helm.sh/resource-policy"], o.GetName())
		names = append(names, o.GetName())
		var crd apiextv1.CustomResourceDefinition
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &crd))
		for _, e := range embedded {
			if e.Name == crd.Name {
				assert.Equal(t, e.Spec, crd.Spec, "%s: the chart's copy differs from pkg/crds/yaml (run go generate)", crd.Name)
			}
		}
		if slices.Contains(legacyCRDs, crd.Name) {
			assert.Equal(t, "elemental.cattle.io", crd.Spec.Group)
			assert.Equal(t, apiextv1.NamespaceScoped, crd.Spec.Scope)
			assert.Equal(t, crd.Spec.Names.Plural+".elemental.cattle.io", crd.Name)
			require.Len(t, crd.Spec.Versions, 1)
			v := crd.Spec.Versions[0]
			assert.Equal(t, "v1beta1", v.Name)
			assert.True(t, v.Served && v.Storage)
			assert.NotNil(t, v.Subresources.Status, "upstream serves status as a subresource")
			schema := v.Schema.OpenAPIV3Schema
			assert.Contains(t, schema.Description, "does not act on")
			for _, field := range []string{"spec", "status"} {
				p := schema.Properties[field].XPreserveUnknownFields
				assert.True(t, p != nil && *p, "%s: %s must keep every field", crd.Name, field)
			}
		}
	}
	assert.ElementsMatch(t, want, names)
	assert.Len(t, names, len(upstreamKinds), "the upstream CRD chart's nine CRDs")
}

func deployment(t *testing.T, r *rendered) *appsv1.Deployment {
	t.Helper()
	u := r.find("Deployment", "")
	require.NotNil(t, u, "no Deployment rendered")
	var d appsv1.Deployment
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d))
	return &d
}

// operatorFlags maps every ELEMENTAL_OPERATOR_* variable to its flag.
func operatorFlags() map[string]string {
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	cfg := operator.DefaultConfig()
	cfg.BindFlags(fs)
	out := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { out[operator.EnvName(f.Name)] = f.Name })
	return out
}

// TestDeployment checks, for every variant, on a cluster with and without
// Rancher, what the issue asks of the pod: non-root, read-only root, no
// capabilities, probes on the health port, and every ELEMENTAL_OPERATOR_*
// variable naming a real operator flag.
func TestDeployment(t *testing.T) {
	flags := operatorFlags()
	for name, vals := range variants(t) {
		for cluster, caps := range map[string]*chartutil.Capabilities{"no Rancher": chartutil.DefaultCapabilities, "Rancher": withKinds(rancherKinds...)} {
			t.Run(name+"/"+cluster, func(t *testing.T) { checkDeployment(t, flags, vals, caps) })
		}
	}
}

func checkDeployment(t *testing.T, flags map[string]string, vals chartutil.Values, caps *chartutil.Capabilities) {
	t.Helper()
	r, err := renderFor(operatorChart, vals, caps)
	require.NoError(t, err)
	d := deployment(t, r)
	pod := d.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]

	require.NotNil(t, pod.SecurityContext)
	assert.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.NotNil(t, c.SecurityContext)
	assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	assert.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	assert.False(t, *pod.EnableServiceLinks, "service links would inject ELEMENTAL_OPERATOR_* variables")
	assert.Equal(t, "elemental-operator", pod.ServiceAccountName)

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	require.NotNil(t, c.LivenessProbe)
	require.NotNil(t, c.ReadinessProbe)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "health", c.LivenessProbe.HTTPGet.Port.String())
	assert.Equal(t, "health", c.ReadinessProbe.HTTPGet.Port.String())
	assert.NotZero(t, ports["health"])

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
		if strings.HasPrefix(e.Name, operator.EnvPrefix) {
			assert.Contains(t, flags, e.Name, "%s is not the variable of any operator flag", e.Name)
		}
	}
	assert.Equal(t, "metadata.namespace", env["ELEMENTAL_OPERATOR_NAMESPACE"].ValueFrom.FieldRef.FieldPath)
	assert.Equal(t, "true", env["ELEMENTAL_OPERATOR_LEADER_ELECT"].Value, "leader election is always on")
}

// TestDefaultsMatchTheOperator: the chart's defaults are the operator's
// (ports 8080 metrics, 9440 health, 8443 registration), CRDs come from the
// CRD chart, and the image follows systemDefaultRegistry.
func TestDefaultsMatchTheOperator(t *testing.T) {
	r, err := render(operatorChart, nil)
	require.NoError(t, err)
	d := deployment(t, r)
	c := d.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	def := operator.DefaultConfig()
	assert.Equal(t, def.MetricsAddr, env["ELEMENTAL_OPERATOR_METRICS_ADDR"])
	assert.Equal(t, def.HealthAddr, env["ELEMENTAL_OPERATOR_HEALTH_ADDR"])
	assert.Equal(t, def.RegistrationAddr, env["ELEMENTAL_OPERATOR_REGISTRATION_ADDR"])
	assert.Equal(t, def.ResetTimeout.String(), mustDuration(t, env["ELEMENTAL_OPERATOR_RESET_TIMEOUT"]))
	assert.Equal(t, strconv.Itoa(def.QuarantineAfter), env["ELEMENTAL_OPERATOR_QUARANTINE_AFTER"])
	assert.Equal(t, "false", env["ELEMENTAL_OPERATOR_INSTALL_CRDS"])
	assert.Equal(t, "rancher/elemental-operator:0.1.0", c.Image)
	assert.Equal(t, "direct", env["ELEMENTAL_OPERATOR_REGISTRATION_MODE"], "no Rancher: auto is direct")
	assert.Contains(t, r.notes, "registration.url is not set")

	// No CRD write rights unless the operator installs them: only the watch,
	// by name, of the optional kinds it waits for.
	cr := r.find("ClusterRole", "elemental-operator")
	require.NotNil(t, cr)
	var role rbacv1.ClusterRole
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(cr.Object, &role))
	for _, rule := range role.Rules {
		if slices.Contains(rule.Resources, "customresourcedefinitions") {
			assert.ElementsMatch(t, []string{"list", "watch"}, rule.Verbs, "CRD rights without installCRDs")
			assert.ElementsMatch(t, []string{"machines.cluster.x-k8s.io", "clusters.cluster.x-k8s.io", "settings.management.cattle.io"}, rule.ResourceNames)
		}
	}

	// The CAPI aggregation role (see docs/contracts.md, Cluster API: RBAC).
	agg := r.find("ClusterRole", "elemental-capi-manager")
	require.NotNil(t, agg)
	assert.Equal(t, "true", agg.GetLabels()["cluster.x-k8s.io/aggregate-to-manager"])

	full, err := render(operatorChart, variants(t)["full-values.yaml"])
	require.NoError(t, err)
	fc := deployment(t, full).Spec.Template.Spec.Containers[0]
	assert.Equal(t, "registry.example.com/rancher/elemental-operator:v9.9.9", fc.Image)
	assert.Contains(t, full.notes, "https://elemental.example.com/elemental/registration/<token>")
	assert.Contains(t, full.notes, "<Rancher server-url>/elemental/registration/<token>")
	assert.Contains(t, mustJSON(t, full.find("ClusterRole", "elemental-operator")), "customresourcedefinitions")
	guard := full.find("Job", "elemental-operator-uninstall-guard")
	require.NotNil(t, guard)
	assert.Equal(t, "pre-delete", guard.GetAnnotations()["helm.sh/hook"])
	assert.Contains(t, mustJSON(t, guard), "registry.example.com/rancher/shell:")
}

func mustDuration(t *testing.T, s string) string {
	t.Helper()
	fs := flag.NewFlagSet("d", flag.ContinueOnError)
	d := fs.Duration("d", 0, "")
	require.NoError(t, fs.Set("d", s))
	return d.String()
}

func mustJSON(t *testing.T, u *unstructured.Unstructured) string {
	t.Helper()
	b, err := u.MarshalJSON()
	require.NoError(t, err)
	return string(b)
}

// TestSchemaRejectsBadValues: values.schema.json catches typos and wrong types.
func TestSchemaRejectsBadValues(t *testing.T) {
	for name, vals := range map[string]chartutil.Values{
		"unknown key":                  {"replica": 2},
		"replicas as string":           {"replicas": "two"},
		"bad pull policy":              {"image": map[string]interface{}{"repository": "x", "pullPolicy": "Sometimes"}},
		"bad service type":             {"service": map[string]interface{}{"type": "Ingress"}},
		"bad duration":                 {"resetTimeout": "soon"},
		"negative quarantineAfter":     {"quarantineAfter": -1},
		"bad server URL":               {"serverURL": "rancher.example.com"},
		"bad mode":                     {"registration": map[string]interface{}{"mode": "tunnel"}},
		"bad registration URL":         {"registration": map[string]interface{}{"url": "elemental.example.com"}},
		"bad agent URL":                {"agent": map[string]interface{}{"url": "kube:6443"}},
		"unknown agent key":            {"agent": map[string]interface{}{"ca": "x"}},
		"root":                         {"securityContext": map[string]interface{}{"runAsUser": 0}},
		"unknown upstream channel key": {"channel": map[string]interface{}{"url": "x"}},
		"proxy as a number":            {"proxy": 3128},
	} {
		_, err := render(operatorChart, vals)
		assert.Error(t, err, name)
	}
}

// TestDryRunApply: the apiserver accepts every rendered object of every
// variant (server-side apply, dry run), hooks included, rendered with the
// capabilities Helm discovers on that apiserver: the test cluster, which
// serves Rancher's APIService and GlobalRole and our Metadata, and a cluster
// without Rancher, where neither Rancher object may be rendered and where
// `helm install --dry-run=server` refuses an explicit rancher or both mode.
func TestDryRunApply(t *testing.T) {
	crdsRendered, err := render(crdChart, nil)
	require.NoError(t, err)
	t.Run("crds", func(t *testing.T) { dryRunApply(t, env.Config, crdsRendered.objects) })

	caps := capabilitiesOf(t, env.Config)
	for _, k := range rancherKinds {
		require.True(t, caps.APIVersions.Has(k), "the test cluster serves %s", k)
	}
	for name, vals := range variants(t) {
		t.Run("Rancher/"+name, func(t *testing.T) {
			r, err := renderFor(operatorChart, vals, caps)
			require.NoError(t, err)
			dryRunApply(t, env.Config, r.objects)
			assert.Contains(t, r.kinds(), "Metadata")
			assert.Contains(t, r.kinds(), "GlobalRole")
			if vals["registration"] == nil {
				assert.Contains(t, r.kinds(), "APIService", "auto is rancher here")
			}
		})
	}

	// helm install --dry-run=server, Helm discovering the capabilities itself.
	dir := t.TempDir()
	h := helmClient{t: t, kubeconfig: filepath.Join(dir, "kubeconfig"), cacheDir: filepath.Join(dir, "cache")}
	require.NoError(t, env.WriteKubeconfig(h.kubeconfig))
	in := action.NewInstall(h.config())
	in.ReleaseName, in.Namespace, in.DryRun, in.DryRunOption = releaseName, releaseNamespace, true, "server"
	rel, err := in.Run(mustLoad(t, operatorChart), nil)
	require.NoError(t, err)
	for _, kind := range []string{"APIService", "GlobalRole", "Metadata"} {
		assert.Contains(t, rel.Manifest, "\nkind: "+kind+"\n")
	}
	assert.Contains(t, rel.Info.Notes, "Registration mode: rancher (registration.mode=auto")

	bare, err := testenv.Start(testenv.Options{NoRancherCRDs: true})
	require.NoError(t, err)
	defer func() { _ = bare.Stop() }()
	require.NoError(t, setupCluster(bare))
	caps = capabilitiesOf(t, bare.Config)
	require.False(t, caps.APIVersions.Has("management.cattle.io/v3/APIService"))
	h.kubeconfig = filepath.Join(dir, "bare-kubeconfig")
	require.NoError(t, bare.WriteKubeconfig(h.kubeconfig))
	for name, vals := range variants(t) {
		t.Run("no Rancher/"+name, func(t *testing.T) {
			if reg, _ := vals["registration"].(map[string]interface{}); reg["mode"] == "rancher" || reg["mode"] == "both" {
				// helm install --dry-run=server: the chart looks at the cluster.
				in := action.NewInstall(h.config())
				in.ReleaseName, in.Namespace, in.DryRun, in.DryRunOption = releaseName, releaseNamespace, true, "server"
				_, err := in.Run(mustLoad(t, operatorChart), vals)
				require.Error(t, err)
				assert.Contains(t, err.Error(), fmt.Sprintf("registration.mode=%s needs Rancher", reg["mode"]))
				return
			}
			r, err := renderFor(operatorChart, vals, caps)
			require.NoError(t, err)
			dryRunApply(t, bare.Config, r.objects)
			assert.NotContains(t, r.kinds(), "APIService")
			assert.NotContains(t, r.kinds(), "GlobalRole")
			assert.Contains(t, r.kinds(), "Metadata", "the CRDs are installed")
		})
	}
}

// capabilitiesOf is what Helm's install and upgrade actions discover.
func capabilitiesOf(t *testing.T, cfg *rest.Config) *chartutil.Capabilities {
	t.Helper()
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	require.NoError(t, err)
	kv, err := disco.ServerVersion()
	require.NoError(t, err)
	versions, err := action.GetVersionSet(disco)
	require.NoError(t, err)
	return &chartutil.Capabilities{
		APIVersions: versions,
		KubeVersion: chartutil.KubeVersion{Version: kv.GitVersion, Major: kv.Major, Minor: kv.Minor},
		HelmVersion: chartutil.DefaultCapabilities.HelmVersion,
	}
}

// dryRunApply server-side applies objects with dryRun=All.
func dryRunApply(t *testing.T, cfg *rest.Config, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		require.NoError(t, err, "%s %s", gvk, o.GetName())
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			assert.Equal(t, releaseNamespace, o.GetNamespace(), "%s %s has no explicit namespace", gvk.Kind, o.GetName())
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		body, err := o.MarshalJSON()
		require.NoError(t, err)
		force := true
		_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
			FieldManager: "helm", Force: &force, DryRun: []string{metav1.DryRunAll},
		})
		assert.NoError(t, err, "%s %s", gvk.Kind, o.GetName())
	}
}

// TestFleetBundle: the example bundles deploy both charts at the chart
// versions in this tree, the operator after the CRDs.
func TestFleetBundle(t *testing.T) {
	type fleetYAML struct {
		DefaultNamespace string            `json:"defaultNamespace"`
		Labels           map[string]string `json:"labels"`
		DependsOn        []struct {
			Selector metav1.LabelSelector `json:"selector"`
		} `json:"dependsOn"`
		Helm struct {
			ReleaseName, Chart, Version, Repo string
			TakeOwnership                     bool
			Values                            map[string]interface{}
		} `json:"helm"`
	}
	read := func(dir string) fleetYAML {
		b, err := os.ReadFile(filepath.Join("../../examples/fleet", dir, "fleet.yaml"))
		require.NoError(t, err)
		var f fleetYAML
		require.NoError(t, yaml.UnmarshalStrict(b, &f), dir)
		return f
	}
	crdsBundle, opBundle := read("elemental-operator-crds"), read("elemental-operator")
	for dir, f := range map[string]fleetYAML{crdChart: crdsBundle, operatorChart: opBundle} {
		chrt, err := loader.Load(dir)
		require.NoError(t, err)
		assert.Equal(t, chrt.Name(), f.Helm.Chart)
		assert.Equal(t, chrt.Metadata.Version, f.Helm.Version)
		assert.Equal(t, chrt.Name(), f.Helm.ReleaseName)
		assert.Equal(t, releaseNamespace, f.DefaultNamespace)
		if f.Helm.Values != nil {
			_, err := render(dir, f.Helm.Values)
			assert.NoError(t, err, "the bundle's values must pass values.schema.json")
		}
	}
	require.Len(t, opBundle.DependsOn, 1)
	assert.Equal(t, crdsBundle.Labels, opBundle.DependsOn[0].Selector.MatchLabels)
}
