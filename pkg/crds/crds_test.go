package crds_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/elemental-operator/elemental-operator/pkg/crds"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var (
	env *testenv.Env
	dyn dynamic.Interface
)

func TestMain(m *testing.M) {
	var err error
	env, err = testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dyn = dynamic.NewForConfigOrDie(env.Config)
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping test environment:", err)
	}
	os.Exit(code)
}

func resourceFor(kind string) schema.GroupVersionResource {
	plural := map[string]string{
		"MachineRegistration":              "machineregistrations",
		"MachineInventory":                 "machineinventories",
		"MachineInventorySelector":         "machineinventoryselectors",
		"MachineInventorySelectorTemplate": "machineinventoryselectortemplates",
		"Metadata":                         "metadata",
	}[kind]
	return schema.GroupVersionResource{Group: "elemental.cattle.io", Version: "v1beta1", Resource: plural}
}

func load(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	obj := &unstructured.Unstructured{}
	require.NoError(t, yaml.Unmarshal(data, &obj.Object))
	return obj
}

func namespace(t *testing.T) string {
	t.Helper()
	ns, err := env.NewNamespace(context.Background(), "crds")
	require.NoError(t, err)
	return ns
}

func create(t *testing.T, ns string, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	return dyn.Resource(resourceFor(obj.GetKind())).Namespace(ns).Create(context.Background(), obj, metav1.CreateOptions{})
}

// capiKinds are the kinds Cluster API works with (the infrastructure-machine
// contract): their CRDs carry the contract labels. Metadata is not one of
// them and must not carry them.
var capiKinds = map[string]bool{
	"MachineRegistration": true, "MachineInventory": true,
	"MachineInventorySelector": true, "MachineInventorySelectorTemplate": true,
}

func TestEmbeddedCRDs(t *testing.T) {
	objs, err := crds.Objects()
	require.NoError(t, err)
	var kinds []string
	for _, crd := range objs {
		kind := crd.Spec.Names.Kind
		kinds = append(kinds, kind)
		if capiKinds[kind] {
			assert.Equal(t, "v1beta1", crd.Labels["cluster.x-k8s.io/v1beta1"], crd.Name)
			assert.Equal(t, "v1beta1", crd.Labels["cluster.x-k8s.io/v1beta2"], crd.Name)
			assert.Equal(t, "infrastructure-elemental", crd.Labels["cluster.x-k8s.io/provider"], crd.Name)
		} else {
			for label := range crd.Labels {
				assert.NotContains(t, label, "cluster.x-k8s.io/", "%s is no Cluster API kind", crd.Name)
			}
		}
		assert.Equal(t, "elemental.cattle.io", crd.Spec.Group, crd.Name)
		assert.Contains(t, crd.Spec.Names.Categories, "elemental", crd.Name)
		assert.Equal(t, "Namespaced", string(crd.Spec.Scope), crd.Name)
		require.Len(t, crd.Spec.Versions, 1)
		assert.Equal(t, "v1beta1", crd.Spec.Versions[0].Name, crd.Name)
		assert.NotNil(t, crd.Spec.Versions[0].Subresources.Status, crd.Name)
		assert.NotEmpty(t, crd.Spec.Versions[0].AdditionalPrinterColumns, crd.Name)
	}
	assert.ElementsMatch(t, []string{
		"MachineRegistration", "MachineInventory", "MachineInventorySelector", "MachineInventorySelectorTemplate", "Metadata",
	}, kinds)
}

func TestSpecExamplesAreAccepted(t *testing.T) {
	ns := namespace(t)
	files, err := filepath.Glob("testdata/valid/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			obj := load(t, f)
			_, err := create(t, ns, obj)
			require.NoError(t, err)
		})
	}
}

func TestInvalidObjectsAreRejected(t *testing.T) {
	ns := namespace(t)
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := create(t, ns, load(t, f))
			require.Error(t, err)
			assert.True(t, apierrors.IsInvalid(err), "want 422 Invalid, got %v", err)
		})
	}
}

func TestSchemaKeepsWhatUpstreamPruned(t *testing.T) {
	ns := namespace(t)
	got, err := create(t, ns, load(t, "testdata/valid/machineinventoryselectortemplate.yaml"))
	require.NoError(t, err)
	labels, _, _ := unstructured.NestedStringMap(got.Object, "spec", "template", "metadata", "labels")
	assert.Equal(t, map[string]string{"team": "fire"}, labels, "template labels must survive pruning")

	got, err = create(t, ns, load(t, "testdata/valid/machineregistration.yaml"))
	require.NoError(t, err)
	users, found, _ := unstructured.NestedSlice(got.Object, "spec", "config", "cloud-config", "users")
	assert.True(t, found, "cloud-config must be preserved")
	assert.Len(t, users, 1)
	// Defaults from the upstream schema.
	reset, _, _ := unstructured.NestedMap(got.Object, "spec", "config", "elemental", "reset")
	assert.Equal(t, map[string]interface{}{"enabled": true, "reset-persistent": true, "reset-oem": true, "reboot": true}, reset)
	snap, _, _ := unstructured.NestedMap(got.Object, "spec", "config", "elemental", "install", "snapshotter")
	assert.Equal(t, map[string]interface{}{"type": "loopdevice", "maxSnaps": int64(2)}, snap)
	policy, _, _ := unstructured.NestedString(got.Object, "spec", "releasePolicy")
	assert.Equal(t, "Release", policy)
	configurator, _, _ := unstructured.NestedString(got.Object, "spec", "config", "network", "configurator")
	assert.Equal(t, "nmc", configurator)
}

func TestStatusValidation(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	mis, err := create(t, ns, load(t, "testdata/valid/machineinventoryselector.yaml"))
	require.NoError(t, err)
	client := dyn.Resource(resourceFor("MachineInventorySelector")).Namespace(ns)

	cond := map[string]interface{}{
		"type": "Ready", "status": "True", "reason": "SelectorReady", "message": "",
		"lastTransitionTime": "2026-01-01T00:00:00Z",
	}
	good := mis.DeepCopy()
	require.NoError(t, unstructured.SetNestedField(good.Object, map[string]interface{}{
		"ready":                 true,
		"initialization":        map[string]interface{}{"provisioned": true},
		"machineInventoryRef":   map[string]interface{}{"name": "fire-3f9a1c"},
		"bootstrapPlanChecksum": "5d2e",
		"addresses": []interface{}{
			map[string]interface{}{"type": "InternalIP", "address": "192.168.122.50"},
			map[string]interface{}{"type": "Hostname", "address": "fire-3f9a1c"},
		},
		"conditions": []interface{}{cond},
	}, "status"))
	updated, err := client.UpdateStatus(ctx, good, metav1.UpdateOptions{})
	require.NoError(t, err)

	for name, mutate := range map[string]func(*unstructured.Unstructured){
		"bad address type": func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedSlice(u.Object, []interface{}{map[string]interface{}{"type": "Public", "address": "1.2.3.4"}}, "status", "addresses")
		},
		"empty address": func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedSlice(u.Object, []interface{}{map[string]interface{}{"type": "InternalIP", "address": ""}}, "status", "addresses")
		},
		"condition without reason": func(u *unstructured.Unstructured) {
			c := map[string]interface{}{"type": "Ready", "status": "True", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
			_ = unstructured.SetNestedSlice(u.Object, []interface{}{c}, "status", "conditions")
		},
		"condition with a bad reason": func(u *unstructured.Unstructured) {
			c := map[string]interface{}{"type": "Ready", "status": "True", "reason": "not a reason!", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
			_ = unstructured.SetNestedSlice(u.Object, []interface{}{c}, "status", "conditions")
		},
	} {
		t.Run(name, func(t *testing.T) {
			bad := updated.DeepCopy()
			mutate(bad)
			_, err := client.UpdateStatus(ctx, bad, metav1.UpdateOptions{})
			require.Error(t, err)
			assert.True(t, apierrors.IsInvalid(err), "want 422 Invalid, got %v", err)
		})
	}

	mi, err := create(t, ns, load(t, "testdata/valid/machineinventory.yaml"))
	require.NoError(t, err)
	miClient := dyn.Resource(resourceFor("MachineInventory")).Namespace(ns)
	require.NoError(t, unstructured.SetNestedField(mi.Object, map[string]interface{}{
		"secretRef": map[string]interface{}{"namespace": ns, "name": "fire-3f9a1c"},
		"checksum":  "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
		"state":     "Applied",
		"type":      "empty",
	}, "status", "plan"))
	mi, err = miClient.UpdateStatus(ctx, mi, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, unstructured.SetNestedField(mi.Object, "Bogus", "status", "plan", "state"))
	_, err = miClient.UpdateStatus(ctx, mi, metav1.UpdateOptions{})
	assert.True(t, apierrors.IsInvalid(err), "want 422 Invalid, got %v", err)
}
