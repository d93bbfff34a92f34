package chart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// upstreamKinds are the nine CRDs of the upstream elemental-operator CRD chart
// (v1.9), kind by plural; none carries helm.sh/resource-policy: keep.
var upstreamKinds = map[string]string{
	"machineregistrations":              "MachineRegistration",
	"machineinventories":                "MachineInventory",
	"machineinventoryselectors":         "MachineInventorySelector",
	"machineinventoryselectortemplates": "MachineInventorySelectorTemplate",
	"metadata":                          "Metadata",
	"seedimages":                        "SeedImage",
	"managedosimages":                   "ManagedOSImage",
	"managedosversions":                 "ManagedOSVersion",
	"managedosversionchannels":          "ManagedOSVersionChannel",
}

func elementalGVR(plural string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "elemental.cattle.io", Version: "v1beta1", Resource: plural}
}

// The upstream-shaped CRD chart: the nine CRDs with upstream's names, labels
// and annotations and no keep policy. Their schemas keep every field (the
// objects below are written with every field upstream's schemas would have
// defaulted already, as a real upstream cluster stores them).
const upstreamCRDTemplate = `{{- range $plural, $kind := .Kinds }}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {{ $plural }}.elemental.cattle.io
  annotations:
    app.kubernetes.io/instance: '{{ "{{ .Release.Name }}" }}'
    app.kubernetes.io/part-of: Elemental Operator
    app.kubernetes.io/version: '{{ "{{ .Chart.Version }}" }}'
  labels:
    cluster.x-k8s.io/provider: infrastructure-elemental
    cluster.x-k8s.io/v1beta1: v1beta1
    release-name: '{{ "{{ .Release.Name }}" }}'
spec:
  group: elemental.cattle.io
  names:
    kind: {{ $kind }}
    listKind: {{ $kind }}List
    plural: {{ $plural }}
    singular: {{ if eq $plural "metadata" }}metadata{{ else }}{{ $kind | lower }}{{ end }}
  scope: Namespaced
  versions:
  - name: v1beta1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
{{- end }}
`

// The upstream-shaped operator chart (v1.9): its objects under the names
// upstream gives them, a Deployment selecting app=elemental-operator, and
// the default OS channels it creates in fleet-default.
var upstreamOperatorTemplates = map[string]string{
	"templates/serviceaccount.yaml": `apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .Release.Name }}
`,
	"templates/rbac.yaml": `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .Release.Name }}
rules:
- apiGroups: ["elemental.cattle.io"]
  resources: ["machineinventories", "machineregistrations", "seedimages", "managedosversionchannels"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ .Release.Name }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ .Release.Name }}
subjects:
- kind: ServiceAccount
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: elemental-capi-role
  labels:
    cluster.x-k8s.io/aggregate-to-manager: "true"
rules:
- apiGroups: ["elemental.cattle.io"]
  resources: ["*"]
  verbs: ["*"]
`,
	"templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app: elemental-operator
  template:
    metadata:
      labels:
        app: elemental-operator
    spec:
      serviceAccountName: {{ .Release.Name }}
      containers:
      - name: {{ .Release.Name }}
        image: {{ .Values.registryUrl }}/{{ .Values.image.repository }}:{{ .Values.image.tag }}
        args: ["operator", "--namespace", "{{ .Release.Namespace }}"]
`,
	"templates/rancher.yaml": `apiVersion: management.cattle.io/v3
kind: APIService
metadata:
  name: {{ .Release.Name }}
spec:
  secretName: elemental-operator
  secretNamespace: {{ .Release.Namespace }}
  pathPrefixes:
  - /elemental/
---
apiVersion: management.cattle.io/v3
kind: GlobalRole
metadata:
  name: {{ .Release.Name }}
  labels:
    cattle.io/creator: norman
displayName: Elemental Administrator
rules:
- apiGroups: ["elemental.cattle.io"]
  resources: ["*"]
  verbs: ["*"]
---
apiVersion: elemental.cattle.io/v1beta1
kind: Metadata
metadata:
  name: {{ .Release.Name }}
spec:
  appVersion: {{ .Chart.AppVersion }}
`,
	"templates/channels.yaml": `{{- range $key, $channel := .Values.defaultChannels }}
{{- if $channel.included }}
---
apiVersion: elemental.cattle.io/v1beta1
kind: ManagedOSVersionChannel
metadata:
  name: {{ $channel.name }}
  namespace: fleet-default
spec:
  deleteNoLongerInSyncVersions: {{ $channel.deleteNoLongerInSyncVersions }}
  enabled: {{ $channel.enabled }}
  syncInterval: 1h
  options:
    image: {{ $channel.image }}
  type: custom
{{- end }}
{{- end }}
`,
	"values.yaml": `image:
  empty: rancher/pause:3.1
  repository: rancher/elemental-operator
  tag: 1.9.2
  imagePullPolicy: IfNotPresent
seedImage:
  repository: rancher/seedimage-builder
  tag: 1.9.2
  imagePullPolicy: IfNotPresent
defaultChannels:
  slMicro62Baremetal:
    included: true
    name: sl-micro-6.2-baremetal-channel
    enabled: true
    image: registry.example.com/rancher/elemental-channel/sl-micro:6.2-baremetal
    deleteNoLongerInSyncVersions: true
  slMicro62KVM:
    included: false
    name: sl-micro-6.2-kvm-channel
    enabled: false
    image: registry.example.com/rancher/elemental-channel/sl-micro:6.2-kvm
    deleteNoLongerInSyncVersions: true
replicas: 1
noProxy: 127.0.0.0/8,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,.svc,.cluster.local
global:
  cattle:
    systemDefaultRegistry: ""
registryUrl: registry.example.com
debug: false
`,
}

// upstreamObjects are what an upstream installation holds besides the Helm
// releases: written by admins and by the upstream operator, status included.
const upstreamObjects = `
apiVersion: elemental.cattle.io/v1beta1
kind: MachineRegistration
metadata:
  name: fire-nodes
  namespace: fleet-default
  labels: {element: fire}
spec:
  machineName: fire-${System Information/UUID}
  machineInventoryLabels:
    element: fire
    manufacturer: ${System Information/Manufacturer}
  machineInventoryAnnotations:
    owner: team-fire
  config:
    cloud-config:
      users:
      - name: root
        passwd: root
    elemental:
      install:
        device: /dev/sda
        reboot: true
        snapshotter: {type: loopdevice, maxSnaps: 2}
      registration:
        auth: tpm
        emulate-tpm: true
        emulated-tpm-seed: -1
      reset:
        enabled: true
        reboot: true
        reset-oem: true
        reset-persistent: true
    network:
      configurator: nmc
      ipAddresses: {}
status:
  registrationToken: v7c2bfbvj8fq8jd7pg5ql6xw2hxmk6v5m2p9p7t4b9vxc8h6g2zzqk
  registrationURL: https://rancher.example.com/elemental/registration/v7c2bfbvj8fq8jd7pg5ql6xw2hxmk6v5m2p9p7t4b9vxc8h6g2zzqk
  conditions:
  - type: Ready
    status: "True"
    reason: SuccessfullyCreated
    message: ""
    lastTransitionTime: "2025-06-01T10:00:00Z"
---
apiVersion: elemental.cattle.io/v1beta1
kind: MachineInventory
metadata:
  name: fire-4c4c4544-0044
  namespace: fleet-default
  labels: {element: fire, manufacturer: QEMU}
  annotations:
    elemental.cattle.io/auth: tpm
    elemental.cattle.io/registration-ip: 192.168.122.50
    elemental.cattle.io/resettable: "true"
  finalizers: [machineinventory.elemental.cattle.io]
spec:
  tpmHash: 9b1f0c2d9b1f0c2d9b1f0c2d9b1f0c2d9b1f0c2d9b1f0c2d9b1f0c2d9b1f0c2d
  machineHash: ""
  network:
    configurator: nmc
    ipAddresses: {eth0: 192.168.122.50}
status:
  conditions:
  - type: Ready
    status: "True"
    reason: PlanSuccessfullyApplied
    message: plan successfully applied
    lastTransitionTime: "2025-06-01T10:05:00Z"
  plan:
    checksum: 44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
    state: Applied
    secretRef:
      name: fire-4c4c4544-0044
      namespace: fleet-default
---
apiVersion: elemental.cattle.io/v1beta1
kind: SeedImage
metadata:
  name: fire-iso
  namespace: fleet-default
spec:
  type: iso
  baseImage: registry.example.com/rancher/elemental-teal-iso/sl-micro:6.2
  cleanupAfterMinutes: 60
  size: 6442450944
  targetPlatform: linux/x86_64
  registrationRef:
    name: fire-nodes
    namespace: fleet-default
  cloud-config:
    write_files:
    - path: /etc/motd
      content: welcome
status:
  state: Completed
  downloadURL: https://rancher.example.com/elemental/seedimage/abcdef/fire-iso.iso
  checksumURL: https://rancher.example.com/elemental/seedimage/abcdef/fire-iso.iso.sha256
  downloadToken: abcdef
  conditions:
  - type: SeedImageReady
    status: "True"
    reason: ResourcesSuccessfullyCreated
    message: resources created
    lastTransitionTime: "2025-06-01T10:02:00Z"
---
apiVersion: elemental.cattle.io/v1beta1
kind: MachineInventorySelectorTemplate
metadata:
  name: fire-pool
  namespace: fleet-default
spec:
  template:
    apiVersion: elemental.cattle.io/v1beta1
    kind: MachineInventorySelector
    metadata:
      labels: {pool: fire}
    spec:
      selector:
        matchLabels: {element: fire}
        matchExpressions:
        - {key: cpus, operator: In, values: ["4", "8"]}
    status: {}
---
apiVersion: elemental.cattle.io/v1beta1
kind: ManagedOSImage
metadata:
  name: upgrade-fire
  namespace: fleet-default
spec:
  managedOSVersionName: v2.2.0
  clusterTargets:
  - clusterName: fire
  drain: {deleteLocalData: true, force: true, ignoreDaemonSets: true, skipWaitForDeleteTimeout: 60}
  concurrency: 1
status:
  conditions:
  - type: Ready
    status: "True"
    lastUpdateTime: "2025-06-01T11:00:00Z"
`

// upstreamVersion is a ManagedOSVersion the upstream operator synced from a
// channel (owned by it).
const upstreamVersion = `
apiVersion: elemental.cattle.io/v1beta1
kind: ManagedOSVersion
metadata:
  name: v2.2.0
  namespace: fleet-default
  labels: {elemental.cattle.io/channel-name: sl-micro-6.2-baremetal-channel}
spec:
  type: container
  version: v2.2.0
  metadata:
    upgradeImage: registry.example.com/rancher/elemental-teal/sl-micro:6.2
    displayName: SL Micro 6.2
status: {}
`

// helmClient runs Helm SDK actions against one test cluster, each with a
// fresh configuration, so capabilities and the REST mapper see CRDs that the
// previous action installed.
type helmClient struct {
	t          *testing.T
	kubeconfig string
	cacheDir   string
}

func (h helmClient) config() *action.Configuration {
	flags := kube.GetConfig(h.kubeconfig, "", releaseNamespace)
	flags.CacheDir = &h.cacheDir
	cfg := new(action.Configuration)
	require.NoError(h.t, cfg.Init(flags, releaseNamespace, "secret", h.t.Logf))
	return cfg
}

func (h helmClient) install(name string, chrt *chart.Chart, vals chartutil.Values) (*release.Release, error) {
	in := action.NewInstall(h.config())
	in.ReleaseName, in.Namespace = name, releaseNamespace
	return in.Run(chrt, vals)
}

func (h helmClient) upgrade(name string, chrt *chart.Chart, vals chartutil.Values) (*release.Release, error) {
	up := action.NewUpgrade(h.config())
	up.Namespace = releaseNamespace
	return up.Run(name, chrt, vals)
}

func writeChart(t *testing.T, dir, name, version string, files map[string]string) *chart.Chart {
	t.Helper()
	files["Chart.yaml"] = fmt.Sprintf("apiVersion: v2\nname: %s\nversion: %s\nappVersion: %s\n", name, version, version)
	for rel, body := range files {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	chrt, err := loader.Load(dir)
	require.NoError(t, err)
	return chrt
}

func mustLoad(t *testing.T, dir string) *chart.Chart {
	t.Helper()
	chrt, err := loader.Load(dir)
	require.NoError(t, err)
	return chrt
}

// objectState is what must survive the migration of one object.
type objectState struct {
	UID                 types.UID
	Labels, Annotations map[string]string
	Finalizers          []string
	Owners              []metav1.OwnerReference
	Spec, Status        interface{}
	Deleting            bool
}

// snapshot reads every object of the nine kinds and every CRD's UID.
func snapshot(t *testing.T, ctx context.Context, dyn dynamic.Interface) (crdUIDs map[string]types.UID, objects map[string]objectState) {
	t.Helper()
	crdUIDs, objects = map[string]types.UID{}, map[string]objectState{}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for plural, kind := range upstreamKinds {
		crd, err := dyn.Resource(crdGVR).Get(ctx, plural+".elemental.cattle.io", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		require.NoError(t, err)
		crdUIDs[crd.GetName()] = crd.GetUID()
		list, err := dyn.Resource(elementalGVR(plural)).List(ctx, metav1.ListOptions{})
		require.NoError(t, err, plural)
		for _, o := range list.Items {
			annotations := o.GetAnnotations()
			// The migration adds the keep policy to the upstream release's channels.
			delete(annotations, "helm.sh/resource-policy")
			objects[kind+" "+o.GetNamespace()+"/"+o.GetName()] = objectState{
				UID: o.GetUID(), Labels: o.GetLabels(), Annotations: annotations,
				Finalizers: o.GetFinalizers(), Owners: o.GetOwnerReferences(),
				Spec: o.Object["spec"], Status: o.Object["status"], Deleting: o.GetDeletionTimestamp() != nil,
			}
		}
	}
	return crdUIDs, objects
}

func createFromYAML(t *testing.T, ctx context.Context, dyn dynamic.Interface, doc string) {
	t.Helper()
	for _, part := range strings.Split(doc, "\n---\n") {
		u := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal([]byte(part), &u.Object))
		plural := ""
		for p, k := range upstreamKinds {
			if k == u.GetKind() {
				plural = p
			}
		}
		ri := dyn.Resource(elementalGVR(plural)).Namespace(u.GetNamespace())
		status, hasStatus := u.Object["status"]
		created, err := ri.Create(ctx, u, metav1.CreateOptions{})
		require.NoError(t, err, "%s %s", u.GetKind(), u.GetName())
		if hasStatus {
			created.Object["status"] = status
			_, err = ri.UpdateStatus(ctx, created, metav1.UpdateOptions{})
			require.NoError(t, err, "%s %s status", u.GetKind(), u.GetName())
		}
	}
}

// waitServed waits until discovery lists every one of the nine kinds.
func waitServed(t *testing.T, disco discovery.DiscoveryInterface) {
	t.Helper()
	eventually(t, time.Minute, func() error {
		list, err := disco.ServerResourcesForGroupVersion("elemental.cattle.io/v1beta1")
		if err != nil {
			return err
		}
		served := map[string]bool{}
		for _, r := range list.APIResources {
			served[r.Name] = true
		}
		for plural := range upstreamKinds {
			if !served[plural] {
				return fmt.Errorf("%s not served yet", plural)
			}
		}
		return nil
	})
}

// TestMigrationFromUpstream runs the README's "Migrating from the upstream
// operator" steps on a cluster holding an upstream-shaped installation: the
// upstream CRD chart's release (nine CRDs without the keep policy), the
// upstream operator chart's release (installed with an upstream values file,
// with its default OS channel) and objects of every kind, status included.
// After the CRD release is upgraded to our CRD chart and the operator release
// to our operator chart (with the same upstream values file), every CRD and
// every object is still there, unchanged.
func TestMigrationFromUpstream(t *testing.T) {
	ctx := context.Background()
	mig, err := testenv.Start(testenv.Options{NoElementalCRDs: true})
	require.NoError(t, err)
	defer func() { _ = mig.Stop() }()
	require.NoError(t, setupCluster(mig))
	_, err = mig.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet-default"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	dyn, err := dynamic.NewForConfig(mig.Config)
	require.NoError(t, err)
	disco, err := discovery.NewDiscoveryClientForConfig(mig.Config)
	require.NoError(t, err)

	dir := t.TempDir()
	h := helmClient{t: t, kubeconfig: filepath.Join(dir, "kubeconfig"), cacheDir: filepath.Join(dir, "cache")}
	require.NoError(t, mig.WriteKubeconfig(h.kubeconfig))
	upstreamValues := variants(t)["upstream-values.yaml"]

	// The upstream installation.
	var crdYAML strings.Builder
	require.NoError(t, template.Must(template.New("crds").Funcs(template.FuncMap{"lower": strings.ToLower}).Parse(upstreamCRDTemplate)).
		Execute(&crdYAML, map[string]interface{}{"Kinds": upstreamKinds}))
	upCRDs := writeChart(t, filepath.Join(dir, "upstream-crds"), "elemental-operator-crds", "1.9.2", map[string]string{"templates/crds.yaml": crdYAML.String()})
	_, err = h.install("elemental-operator-crds", upCRDs, nil)
	require.NoError(t, err)
	waitServed(t, disco)
	opFiles := map[string]string{}
	for k, v := range upstreamOperatorTemplates {
		opFiles[k] = v
	}
	upOperator := writeChart(t, filepath.Join(dir, "upstream-operator"), "elemental-operator", "1.9.2", opFiles)
	_, err = h.install("elemental-operator", upOperator, upstreamValues)
	require.NoError(t, err)
	createFromYAML(t, ctx, dyn, upstreamObjects)
	channels := dyn.Resource(elementalGVR("managedosversionchannels"))
	channel, err := channels.Namespace("fleet-default").Get(ctx, "sl-micro-6.2-baremetal-channel", metav1.GetOptions{})
	require.NoError(t, err, "the upstream release's default channel")
	channel.Object["status"] = map[string]interface{}{"lastSyncedTime": "2025-06-01T10:00:00Z", "syncedGeneration": int64(1), "failedSynchronizationAttempts": int64(0)}
	_, err = channels.Namespace("fleet-default").UpdateStatus(ctx, channel, metav1.UpdateOptions{})
	require.NoError(t, err)
	version := &unstructured.Unstructured{}
	require.NoError(t, yaml.Unmarshal([]byte(upstreamVersion), &version.Object))
	version.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion: "elemental.cattle.io/v1beta1", Kind: "ManagedOSVersionChannel", Name: channel.GetName(), UID: channel.GetUID(),
	}})
	_, err = dyn.Resource(elementalGVR("managedosversions")).Namespace("fleet-default").Create(ctx, version, metav1.CreateOptions{})
	require.NoError(t, err)

	crdsBefore, before := snapshot(t, ctx, dyn)
	require.Len(t, crdsBefore, len(upstreamKinds))
	kindsBefore := map[string]bool{}
	for key := range before {
		kindsBefore[strings.Fields(key)[0]] = true
	}
	require.Len(t, kindsBefore, len(upstreamKinds)-1, "objects of every kind but MachineInventorySelector (Cluster API's): %v", sortedKeys(before))

	// Step 1: the CRD chart, same release name and namespace.
	rel, err := h.upgrade("elemental-operator-crds", mustLoad(t, crdChart), nil)
	require.NoError(t, err)
	assert.Equal(t, release.StatusDeployed, rel.Info.Status)
	crdsAfter, after := snapshot(t, ctx, dyn)
	assert.Equal(t, crdsBefore, crdsAfter, "every CRD is still there, the same object")
	assertUnchanged(t, before, after)
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for name := range crdsAfter {
		crd, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, "keep", crd.GetAnnotations()["helm.sh/resource-policy"], name)
	}

	// Step 2: the operator chart. Without the preparation the chart refuses,
	// naming each step, and changes nothing.
	_, err = h.upgrade("elemental-operator", mustLoad(t, operatorChart), upstreamValues)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "kubectl -n cattle-elemental-system delete deployment elemental-operator")
	require.NoError(t, mig.Client.AppsV1().Deployments(releaseNamespace).Delete(ctx, "elemental-operator", metav1.DeleteOptions{}))
	_, err = h.upgrade("elemental-operator", mustLoad(t, operatorChart), upstreamValues)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "fleet-default/sl-micro-6.2-baremetal-channel")
	assert.Contains(t, err.Error(), "kubectl annotate managedosversionchannels.elemental.cattle.io -A -l app.kubernetes.io/managed-by=Helm helm.sh/resource-policy=keep")

	// kubectl annotate managedosversionchannels.elemental.cattle.io -A -l app.kubernetes.io/managed-by=Helm helm.sh/resource-policy=keep
	list, err := channels.List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=Helm"})
	require.NoError(t, err)
	require.NotEmpty(t, list.Items)
	for _, c := range list.Items {
		_, err := channels.Namespace(c.GetNamespace()).Patch(ctx, c.GetName(), types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"helm.sh/resource-policy":"keep"}}}`), metav1.PatchOptions{})
		require.NoError(t, err)
	}
	rel, err = h.upgrade("elemental-operator", mustLoad(t, operatorChart), upstreamValues)
	require.NoError(t, err)
	assert.Equal(t, release.StatusDeployed, rel.Info.Status)

	// Every CRD and every object is still there, unchanged; the release's
	// Metadata is now ours (the same object).
	crdsAfter, after = snapshot(t, ctx, dyn)
	assert.Equal(t, crdsBefore, crdsAfter, "every CRD is still there, the same object")
	md := "Metadata " + releaseNamespace + "/elemental-operator"
	require.Contains(t, after, md)
	assert.Equal(t, before[md].UID, after[md].UID, "the upstream release's Metadata is adopted, not recreated")
	assert.Equal(t, "0.1.0", after[md].Spec.(map[string]interface{})["appVersion"])
	delete(before, md)
	delete(after, md)
	assertUnchanged(t, before, after)

	// What the operator chart replaced.
	for _, o := range []struct {
		gvr       schema.GroupVersionResource
		ns, name  string
		wantFound bool
	}{
		{schema.GroupVersionResource{Group: "management.cattle.io", Version: "v3", Resource: "apiservices"}, "", "elemental-operator", true},
		{schema.GroupVersionResource{Group: "management.cattle.io", Version: "v3", Resource: "globalroles"}, "", "elemental-operator", true},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, "", "elemental-capi-manager", true},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, "", "elemental-capi-role", false},
		{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, releaseNamespace, "elemental-operator", true},
	} {
		_, err := dyn.Resource(o.gvr).Namespace(o.ns).Get(ctx, o.name, metav1.GetOptions{})
		if o.wantFound {
			assert.NoError(t, err, "%s %s", o.gvr.Resource, o.name)
		} else {
			assert.True(t, apierrors.IsNotFound(err), "%s %s: %v", o.gvr.Resource, o.name, err)
		}
	}
	api, err := dyn.Resource(schema.GroupVersionResource{Group: "management.cattle.io", Version: "v3", Resource: "apiservices"}).Get(ctx, "elemental-operator", metav1.GetOptions{})
	require.NoError(t, err)
	secret, _, _ := unstructured.NestedString(api.Object, "spec", "secretName")
	assert.Equal(t, "elemental-operator", secret, "the Secret Rancher already fills for upstream's APIService")
	d, err := mig.Client.AppsV1().Deployments(releaseNamespace).Get(ctx, "elemental-operator", metav1.GetOptions{})
	require.NoError(t, err)
	env := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	assert.Equal(t, "rancher", env["ELEMENTAL_OPERATOR_REGISTRATION_MODE"])
	assert.Equal(t, "http://proxy.example.com:3128", env["HTTPS_PROXY"], "the upstream values file's proxy")
	assert.Equal(t, "rancher/elemental-operator", strings.SplitN(strings.TrimPrefix(d.Spec.Template.Spec.Containers[0].Image, "registry.example.com/"), ":", 2)[0])
}

// assertUnchanged: every object before is still there with the same UID and
// content. Our MachineRegistration schema defaults spec.releasePolicy, which
// upstream's lacks: reading an upstream object shows the default.
func assertUnchanged(t *testing.T, before, after map[string]objectState) {
	t.Helper()
	for _, key := range sortedKeys(before) {
		got, ok := after[key]
		if !assert.True(t, ok, "%s is gone", key) {
			continue
		}
		want := before[key]
		if strings.HasPrefix(key, "MachineRegistration ") {
			if spec, ok := got.Spec.(map[string]interface{}); ok && spec["releasePolicy"] == "Release" {
				if _, had := want.Spec.(map[string]interface{})["releasePolicy"]; !had {
					spec = copyMap(spec)
					delete(spec, "releasePolicy")
					got.Spec = spec
				}
			}
		}
		assert.Equal(t, want, got, key)
	}
	var extra []string
	for key := range after {
		if _, ok := before[key]; !ok {
			extra = append(extra, key)
		}
	}
	sort.Strings(extra)
	assert.Empty(t, extra, "objects appeared")
}

func copyMap(m map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
