package chart

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// envOf returns the operator container's environment by name.
func envOf(t *testing.T, r *rendered) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range deployment(t, r).Spec.Template.Spec.Containers[0].Env {
		out[e.Name] = e.Value
	}
	return out
}

// values parses a YAML snippet as chart values.
func values(t *testing.T, y string) chartutil.Values {
	t.Helper()
	vals, err := chartutil.ReadValues([]byte(y))
	require.NoError(t, err)
	return vals
}

// TestRegistrationModes: what each mode renders. rancher: the APIService and
// no listener, Service or Ingress; direct: the listener, Service and Ingress,
// no APIService; both: all of it. auto resolves by whether the cluster serves
// Rancher's APIService kind. NOTES says where hosts register.
func TestRegistrationModes(t *testing.T) {
	noRancher, rancher := chartutil.DefaultCapabilities, withKinds(rancherKinds...)
	for _, tc := range []struct {
		name      string
		values    string
		caps      *chartutil.Capabilities
		mode      string // ELEMENTAL_OPERATOR_REGISTRATION_MODE
		tunnel    bool   // APIService rendered, APISERVICE_SECRET set
		listener  bool   // REGISTRATION_ADDR set, Service rendered
		ingress   bool
		url       string // REGISTRATION_URL
		notes     []string
		notNotes  []string
		extraEnvs map[string]string
	}{{
		name: "auto without Rancher", caps: noRancher, mode: "direct", listener: true,
		notes:    []string{"Registration mode: direct (registration.mode=auto: this cluster does not serve Rancher's APIService kind)", "registration.url is not set", "<Rancher server-url>/k8s/clusters/local", "on a cluster without Rancher set agent.url"},
		notNotes: []string{"Through Rancher"},
	}, {
		name: "auto with Rancher", caps: rancher, mode: "rancher", tunnel: true,
		notes: []string{
			"Registration mode: rancher (registration.mode=auto: this cluster serves Rancher's APIService kind)",
			"Through Rancher: hosts register at\n  <Rancher server-url>/elemental/registration/<token>",
			"Rancher's APIService elemental-operator sends /elemental/",
			"kubectl -n cattle-elemental-system get secret elemental-operator",
			"<Rancher server-url>/k8s/clusters/local",
		},
		notNotes: []string{"Directly", "registration.url", "set agent.url"},
	}, {
		name: "rancher", values: "registration: {mode: rancher}", caps: noRancher, mode: "rancher", tunnel: true,
		notes: []string{"Registration mode: rancher.", "Through Rancher"},
	}, {
		name: "direct on a Rancher cluster", caps: rancher, mode: "direct", listener: true, ingress: true,
		values: "registration: {mode: direct, url: https://elemental.example.com/}\ningress: {enabled: true, host: elemental.example.com}",
		url:    "https://elemental.example.com",
		notes: []string{
			"Directly: hosts register at\n  https://elemental.example.com/elemental/registration/<token>",
			"https://elemental-operator.cattle-elemental-system.svc:443 (type ClusterIP)",
			"and the Ingress https://elemental.example.com/elemental/",
		},
		notNotes: []string{"Through Rancher", "not set"},
	}, {
		name: "both", caps: rancher, mode: "both", tunnel: true, listener: true, ingress: true,
		values: "registration: {mode: both, url: https://elemental.example.com, tlsSecretName: my-tls}\ningress: {enabled: true}",
		url:    "https://elemental.example.com", extraEnvs: map[string]string{"ELEMENTAL_OPERATOR_REGISTRATION_TLS_SECRET": "my-tls"},
		notes: []string{
			"Through Rancher: hosts register at\n  <Rancher server-url>/elemental/registration/<token>",
			"Directly: hosts register at\n  https://elemental.example.com/elemental/registration/<token>",
			"serving the certificate in Secret cattle-elemental-system/my-tls",
		},
	}, {
		name: "deprecated serverURL", caps: noRancher, mode: "direct", listener: true,
		values: "serverURL: https://old.example.com/", url: "https://old.example.com",
		notes: []string{"https://old.example.com/elemental/registration/<token>", "DEPRECATED: serverURL. It is used as registration.url"},
	}, {
		name: "registration disabled on a Rancher cluster", caps: rancher, mode: "direct",
		values: "registration: {enabled: false}",
		notes:  []string{"The registration endpoint is disabled"}, notNotes: []string{"Through Rancher", "Directly"},
	}, {
		name: "agent endpoint without Rancher", caps: noRancher, mode: "direct", listener: true,
		values: "agent: {url: https://kube.example.com:6443/}", extraEnvs: map[string]string{"ELEMENTAL_OPERATOR_AGENT_URL": "https://kube.example.com:6443"},
		notes: []string{"Kubernetes API at\n  https://kube.example.com:6443"}, notNotes: []string{"k8s/clusters/local"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := renderFor(operatorChart, values(t, tc.values), tc.caps)
			require.NoError(t, err)
			env := envOf(t, r)
			assert.Equal(t, tc.mode, env["ELEMENTAL_OPERATOR_REGISTRATION_MODE"])

			api := r.find("APIService", "elemental-operator")
			if tc.tunnel {
				require.NotNil(t, api, "APIService")
				assert.Empty(t, api.GetNamespace(), "APIService is cluster-scoped")
				spec, _, _ := unstructured.NestedMap(api.Object, "spec")
				assert.Equal(t, map[string]interface{}{
					"secretName": "elemental-operator", "secretNamespace": releaseNamespace,
					"pathPrefixes": []interface{}{"/elemental/"},
				}, spec)
				assert.Equal(t, "elemental-operator", env["ELEMENTAL_OPERATOR_APISERVICE_SECRET"])
			} else {
				assert.Nil(t, api, "APIService")
				assert.NotContains(t, env, "ELEMENTAL_OPERATOR_APISERVICE_SECRET")
			}

			svc := r.find("Service", "elemental-operator")
			if tc.listener {
				assert.Equal(t, ":8443", env["ELEMENTAL_OPERATOR_REGISTRATION_ADDR"])
				require.NotNil(t, svc, "registration Service")
				assert.Contains(t, containerPorts(t, r), "https")
			} else {
				assert.Equal(t, "", env["ELEMENTAL_OPERATOR_REGISTRATION_ADDR"], "no listener")
				assert.Nil(t, svc, "registration Service")
				assert.NotContains(t, containerPorts(t, r), "https")
			}
			assert.Equal(t, tc.ingress, r.find("Ingress", "") != nil, "Ingress")
			assert.Equal(t, tc.url, env["ELEMENTAL_OPERATOR_REGISTRATION_URL"])
			assert.NotContains(t, env, "ELEMENTAL_OPERATOR_SERVER_URL", "deprecated: the chart maps serverURL to registration-url")
			for k, v := range tc.extraEnvs {
				assert.Equal(t, v, env[k], k)
			}
			for _, s := range tc.notes {
				assert.Contains(t, r.notes, s)
			}
			for _, s := range tc.notNotes {
				assert.NotContains(t, r.notes, s)
			}
		})
	}
}

func containerPorts(t *testing.T, r *rendered) []string {
	var out []string
	for _, p := range deployment(t, r).Spec.Template.Spec.Containers[0].Ports {
		out = append(out, p.Name)
	}
	return out
}

// TestAgentCA: agent.caCert becomes a ConfigMap mounted read-only into the
// operator, whose path is --agent-ca-file; a new CA rolls the pods.
func TestAgentCA(t *testing.T) {
	r, err := render(operatorChart, variants(t)["direct-values.yaml"])
	require.NoError(t, err)
	env := envOf(t, r)
	assert.Equal(t, "https://kube.example.com:6443", env["ELEMENTAL_OPERATOR_AGENT_URL"])
	caFile := env["ELEMENTAL_OPERATOR_AGENT_CA_FILE"]
	require.NotEmpty(t, caFile)

	cm := r.find("ConfigMap", "elemental-operator-agent-ca")
	require.NotNil(t, cm)
	assert.Equal(t, releaseNamespace, cm.GetNamespace())
	pem, _, _ := unstructured.NestedString(cm.Object, "data", "ca.crt")
	assert.True(t, strings.HasPrefix(pem, "-----BEGIN CERTIFICATE-----\n"), pem)
	assert.True(t, strings.HasSuffix(pem, "-----END CERTIFICATE-----\n"), pem)

	d := deployment(t, r)
	pod := d.Spec.Template.Spec
	var mount *corev1.VolumeMount
	for i, m := range pod.Containers[0].VolumeMounts {
		if m.Name == "agent-ca" {
			mount = &pod.Containers[0].VolumeMounts[i]
		}
	}
	require.NotNil(t, mount)
	assert.True(t, mount.ReadOnly)
	assert.Equal(t, caFile, mount.MountPath+"/ca.crt")
	var volume *corev1.Volume
	for i, v := range pod.Volumes {
		if v.Name == "agent-ca" {
			volume = &pod.Volumes[i]
		}
	}
	require.NotNil(t, volume)
	require.NotNil(t, volume.ConfigMap)
	assert.Equal(t, "elemental-operator-agent-ca", volume.ConfigMap.Name)
	assert.NotEmpty(t, d.Spec.Template.Annotations["checksum/agent-ca"])
}

// TestRancherObjects: the Metadata the Rancher UI extension reads and the
// Elemental Administrator GlobalRole are rendered only when the cluster
// serves their kinds (Metadata also when forced), and match upstream's shape.
func TestRancherObjects(t *testing.T) {
	for _, tc := range []struct {
		name             string
		kinds            []string
		values           string
		metadata, global bool
	}{
		{name: "no Rancher, no CRD chart"},
		{name: "CRD chart without Rancher", kinds: []string{"elemental.cattle.io/v1beta1/Metadata"}, metadata: true},
		{name: "forced", values: "uiMetadata: {force: true}", metadata: true},
		{name: "Rancher", kinds: rancherKinds, metadata: true, global: true},
		{name: "Rancher, registration disabled", kinds: rancherKinds, values: "registration: {enabled: false}", metadata: true, global: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := renderFor(operatorChart, values(t, tc.values), withKinds(tc.kinds...))
			require.NoError(t, err)
			md := r.find("Metadata", "")
			gr := r.find("GlobalRole", "")
			assert.Equal(t, tc.metadata, md != nil, "Metadata rendered")
			assert.Equal(t, tc.global, gr != nil, "GlobalRole rendered")
			if md != nil {
				chrt, err := loader.Load(operatorChart)
				require.NoError(t, err)
				assert.Equal(t, "elemental.cattle.io/v1beta1", md.GetAPIVersion())
				assert.Equal(t, "elemental-operator", md.GetName())
				assert.Equal(t, releaseNamespace, md.GetNamespace())
				v, _, _ := unstructured.NestedString(md.Object, "spec", "appVersion")
				assert.Equal(t, chrt.Metadata.AppVersion, v)
				a, _, _ := unstructured.NestedStringMap(md.Object, "spec", "annotations")
				assert.Equal(t, chrt.Metadata.Annotations, a, "upstream's Metadata carries the chart's annotations")
			}
			if gr != nil {
				assert.Equal(t, "management.cattle.io/v3", gr.GetAPIVersion())
				assert.Equal(t, "elemental-operator", gr.GetName())
				assert.Empty(t, gr.GetNamespace(), "GlobalRole is cluster-scoped")
				assert.Equal(t, "Elemental Administrator", gr.Object["displayName"])
				rules, _, _ := unstructured.NestedSlice(gr.Object, "rules")
				assert.Equal(t, []interface{}{map[string]interface{}{
					"apiGroups": []interface{}{"elemental.cattle.io"}, "resources": []interface{}{"*"}, "verbs": []interface{}{"*"},
				}}, rules)
			}
		})
	}
}

// TestRefusedValues: values the chart cannot honour fail with a message that
// names the fix, instead of being silently ignored.
func TestRefusedValues(t *testing.T) {
	rancher := withKinds(rancherKinds...)
	for _, tc := range []struct {
		name, values string
		caps         *chartutil.Capabilities
		want         []string
	}{
		{"Ingress in rancher mode", "ingress: {enabled: true}", rancher,
			[]string{"ingress.enabled configures the operator's own HTTPS endpoint", "registration.mode=auto resolved to rancher", "registration.mode=both"}},
		{"registration.url in rancher mode", "registration: {mode: rancher, url: https://e.example.com}", chartutil.DefaultCapabilities,
			[]string{"registration.url configures", "registration.mode=rancher:"}},
		{"serverURL in rancher mode", "serverURL: https://e.example.com", rancher, []string{"serverURL configures"}},
		{"TLS Secret in rancher mode", "registration: {tlsSecretName: x}", rancher, []string{"registration.tlsSecretName configures"}},
		{"agent URL with Rancher", "agent: {url: https://kube.example.com}", rancher, []string{"agent.url and agent.caCert are for clusters without Rancher", "in rancher mode"}},
		{"agent CA in both mode", "registration: {mode: both}\nagent: {caCert: x}", rancher, []string{"in both mode"}},
		{"agent CA not PEM", "agent: {caCert: not a certificate}", chartutil.DefaultCapabilities, []string{"agent.caCert must be PEM"}},
		{"mode without registration", "registration: {enabled: false, mode: rancher}", rancher, []string{"registration.mode=rancher has no effect with registration.enabled=false"}},
		{"serverURL and registration.url differ", "serverURL: https://a.example.com\nregistration: {url: https://b.example.com}", chartutil.DefaultCapabilities,
			[]string{"serverURL is the deprecated name of registration.url"}},
		{"upstream custom channel", "channel: {name: my-channel, image: registry.example.com/my/channel, tag: v1}", rancher,
			[]string{"channel: this chart does not create ManagedOSVersionChannels", "Remove channel.name, channel.image and channel.tag"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderFor(operatorChart, values(t, tc.values), tc.caps)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}

	// `helm upgrade --reuse-values` from the upstream chart renders with the
	// previous chart's defaults in place of ours.
	chrt, err := loader.Load(operatorChart)
	require.NoError(t, err)
	var upstreamDefaults map[string]interface{}
	require.NoError(t, yaml.Unmarshal([]byte(upstreamChartDefaults), &upstreamDefaults))
	chrt.Values = upstreamDefaults
	_, err = renderChart(chrt, nil, rancher)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--reuse-values keeps the previous chart's defaults")
	assert.Contains(t, err.Error(), "--reset-then-reuse-values")
}

// TestUpstreamValues: an upstream v1.9 values file maps onto this chart.
func TestUpstreamValues(t *testing.T) {
	vals := variants(t)["upstream-values.yaml"]
	r, err := renderFor(operatorChart, vals, withKinds(rancherKinds...))
	require.NoError(t, err)
	env := envOf(t, r)
	assert.Equal(t, "rancher", env["ELEMENTAL_OPERATOR_REGISTRATION_MODE"], "upstream always ran inside Rancher")
	assert.Equal(t, "http://proxy.example.com:3128", env["HTTP_PROXY"], "proxy (one URL) is both proxies")
	assert.Equal(t, "http://proxy.example.com:3128", env["HTTPS_PROXY"])
	assert.Equal(t, vals["noProxy"], env["NO_PROXY"], "top-level noProxy")
	assert.Equal(t, "true", env["ELEMENTAL_OPERATOR_DEBUG"])

	d := deployment(t, r)
	assert.Equal(t, int32(2), *d.Spec.Replicas)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	assert.Equal(t, "registry.example.com/rancher/elemental-operator:0.1.0", c.Image, "registryUrl prefixes the image")
	assert.Equal(t, corev1.PullAlways, c.ImagePullPolicy, "image.imagePullPolicy")
	assert.Equal(t, int64(1000), *pod.SecurityContext.RunAsUser)
	assert.Equal(t, int64(1000), *pod.SecurityContext.RunAsGroup)
	assert.Equal(t, int64(2000), *pod.SecurityContext.FSGroup)
	assert.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.Len(t, pod.Tolerations, 1)
	assert.Equal(t, "cattle.io/os", pod.Tolerations[0].Key)
	guard := r.find("Job", "elemental-operator-uninstall-guard")
	require.NotNil(t, guard)
	assert.Contains(t, mustJSON(t, guard), `"registry.example.com/rancher/shell:`)

	assert.Contains(t, r.notes, "Values of the upstream elemental-operator chart without effect here: image.empty, seedImage, defaultChannels, channel.")
	assert.Contains(t, r.notes, "ManagedOSVersionChannel objects are kept, untouched")

	// Without upstream keys, NOTES says nothing about them.
	plain, err := render(operatorChart, nil)
	require.NoError(t, err)
	assert.NotContains(t, plain.notes, "upstream")

	// Our own names still work and the defaults stay ours.
	def := deployment(t, plain).Spec.Template.Spec
	assert.Equal(t, int64(65532), *def.SecurityContext.RunAsUser)
	assert.Nil(t, def.SecurityContext.FSGroup)
	assert.Equal(t, corev1.PullIfNotPresent, def.Containers[0].ImagePullPolicy)
	assert.NotContains(t, envOf(t, plain), "HTTP_PROXY")
}

// upstreamChartDefaults is the shape of the upstream chart's own values.yaml
// (v1.9): what `--reuse-values` puts in place of this chart's defaults.
const upstreamChartDefaults = `
image:
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
replicas: 1
noProxy: 127.0.0.0/8,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,.svc,.cluster.local
global:
  cattle:
    systemDefaultRegistry: ""
registryUrl: registry.example.com
debug: false
nodeSelector:
  kubernetes.io/os: linux
securityContext:
  runAsUser: 1000
  runAsGroup: 1000
  fsGroup: 2000
tolerations:
- key: cattle.io/os
  operator: Equal
  value: linux
  effect: NoSchedule
`
