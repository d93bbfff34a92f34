// Package chart tests the Helm charts: lint, render every ci/*-values.yaml
// variant, server-side dry-run apply of the rendered manifests on the real
// test apiserver, and the operator running under exactly the chart's RBAC
// through the onboarding and provisioning flow (rbac_test.go).
//
// Helm is the pinned Go SDK (helm.sh/helm/v3 in go.mod): no helm binary.
package chart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/elemental-operator/elemental-operator/pkg/crds"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

const (
	operatorChart = "../../chart/elemental-operator"
	crdChart      = "../../chart/elemental-operator-crds"
	releaseName   = "elemental-operator"
	// The chart's catalog namespace (Chart.yaml catalog.cattle.io/namespace).
	releaseNamespace = "cattle-elemental-system"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if env, err = testenv.Start(testenv.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if err := setupCluster(env); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// setupCluster creates the release namespace and a minimal ServiceMonitor CRD
// (prometheus-operator's own is huge; the dry-run only needs the kind served).
func setupCluster(env *testenv.Env) error {
	ctx := context.Background()
	_, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	preserve := true
	sm := &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "servicemonitors.monitoring.coreos.com"},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: "monitoring.coreos.com",
			Names: apiextv1.CustomResourceDefinitionNames{Plural: "servicemonitors", Singular: "servicemonitor", Kind: "ServiceMonitor", ListKind: "ServiceMonitorList"},
			Scope: apiextv1.NamespaceScoped,
			Versions: []apiextv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}},
			}},
		},
	}
	return crds.Install(ctx, env.Config, []*apiextv1.CustomResourceDefinition{sm})
}

// variants lists chart/elemental-operator/ci/*-values.yaml by name.
func variants(t *testing.T) map[string]chartutil.Values {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(operatorChart, "ci", "*-values.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no ci/*-values.yaml variants")
	out := map[string]chartutil.Values{}
	for _, f := range files {
		vals, err := chartutil.ReadValuesFile(f)
		require.NoError(t, err, f)
		out[filepath.Base(f)] = vals
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// rendered is one chart rendering: its objects (hooks included) and NOTES.txt.
type rendered struct {
	objects []*unstructured.Unstructured
	notes   string
}

// render renders a chart as `helm install` would (values validated against
// values.schema.json), without a cluster, for a cluster serving no Rancher or
// Elemental kinds (Helm's default capabilities).
func render(dir string, vals chartutil.Values) (*rendered, error) {
	return renderFor(dir, vals, chartutil.DefaultCapabilities)
}

// withKinds returns Helm's default capabilities plus the given
// group/version/Kind entries (and their group/version), as discovery on a
// cluster serving them would report.
func withKinds(kinds ...string) *chartutil.Capabilities {
	caps := *chartutil.DefaultCapabilities
	caps.APIVersions = append(chartutil.VersionSet{}, caps.APIVersions...)
	for _, k := range kinds {
		caps.APIVersions = append(caps.APIVersions, path.Dir(k), k)
	}
	return &caps
}

// rancherKinds are what a Rancher cluster with the elemental-operator-crds
// chart serves, as far as the operator chart cares.
var rancherKinds = []string{
	"management.cattle.io/v3/APIService", "management.cattle.io/v3/GlobalRole", "management.cattle.io/v3/Setting",
	"elemental.cattle.io/v1beta1/Metadata",
}

// renderFor renders a chart for a cluster with the given capabilities.
func renderFor(dir string, vals chartutil.Values, caps *chartutil.Capabilities) (*rendered, error) {
	chrt, err := loader.Load(dir)
	if err != nil {
		return nil, err
	}
	return renderChart(chrt, vals, caps)
}

func renderChart(chrt *chart.Chart, vals chartutil.Values, caps *chartutil.Capabilities) (*rendered, error) {
	top, err := chartutil.ToRenderValues(chrt, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: releaseNamespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(chrt, top)
	if err != nil {
		return nil, err
	}
	out := &rendered{}
	for _, name := range sortedKeys(files) {
		body := files[name]
		if filepath.Base(name) == "NOTES.txt" {
			out.notes = body
			continue
		}
		if filepath.Ext(name) != ".yaml" {
			continue
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewBufferString(body), 4096)
		for {
			var obj map[string]interface{}
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if len(obj) == 0 {
				continue
			}
			out.objects = append(out.objects, &unstructured.Unstructured{Object: obj})
		}
	}
	return out, nil
}

// kinds lists the rendered objects' kinds (hooks included), in order.
func (r *rendered) kinds() []string {
	var out []string
	for _, o := range r.objects {
		out = append(out, o.GetKind())
	}
	return out
}

func (r *rendered) find(kind, name string) *unstructured.Unstructured {
	for _, o := range r.objects {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

// eventually polls at its own pace: each check lists many objects.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	testenv.EventuallyEvery(t, timeout, 200*time.Millisecond, check)
}
