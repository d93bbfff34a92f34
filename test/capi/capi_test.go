package capi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	reghost "github.com/elemental-operator/elemental-operator/pkg/register/host"
	"github.com/elemental-operator/elemental-operator/pkg/register/protocol"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var (
	clustersGVR = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "clusters"}
	mdGVR       = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "machinedeployments"}
	machinesGVR = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "machines"}
)

// The install script Rancher would hand out. Ours leaves evidence in the
// sandbox and installs an uninstaller the release plan must run.
const bootstrapScript = `#!/bin/sh
set -e
echo "installed on $(hostname)" > /var/lib/rancher/installed
cat > /usr/local/bin/rancher-system-agent-uninstall.sh <<'EOS'
#!/bin/sh
rm -f /var/lib/rancher/installed
echo uninstalled > /var/lib/rancher/uninstalled
EOS
chmod 0755 /usr/local/bin/rancher-system-agent-uninstall.sh
echo bootstrap-ran
`

// hostnamectl without systemd: the agent runs in a private UTS namespace,
// so setting the hostname only touches the sandbox.
const hostnamectlStub = `#!/bin/sh
[ "$1" = set-hostname ] || { echo "unexpected: $*" >&2; exit 1; }
shift
[ "$1" = --transient ] && shift
exec hostname "$1"
`

// A host: our elemental-register client's files, and the real agent it
// configured, running in its own sandbox.
type host struct {
	root  string
	agent *testenv.Agent
}

func TestClusterAPIProvisioning(t *testing.T) {
	ctx := context.Background()
	ns, err := env.NewNamespace(ctx, "capi")
	require.NoError(t, err)

	// Admin: a registration; hosts: our client registers each and writes
	// the agent connection files, and the real agent starts from them.
	mr := &elementalv1.MachineRegistration{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fire-nodes"},
		Spec: elementalv1.MachineRegistrationSpec{
			MachineName:            "fire-${Random/Hex/6}",
			MachineInventoryLabels: map[string]string{"element": "fire"},
		},
	}
	mr.Spec.Config.Elemental.Registration.Auth = "mac"
	_, err = el.MachineRegistration().Create(mr)
	require.NoError(t, err)
	testenv.Eventually(t, time.Minute, func() error {
		mr, err = el.MachineRegistration().Get(ns, "fire-nodes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(mr.Status.Conditions, elementalv1.ConditionReady) {
			return fmt.Errorf("registration not ready: %+v", mr.Status.Conditions)
		}
		return nil
	})
	require.True(t, strings.HasPrefix(mr.Status.RegistrationURL, rancher.URL+"/elemental/registration/"), mr.Status.RegistrationURL)
	// The operator has no listener of its own: Rancher's URL is the only way in.
	_, err = net.DialTimeout("tcp", registrationAddr, time.Second)
	require.Error(t, err, "rancher mode must not listen on --registration-addr")

	// The ISO's registration config, downloaded through Rancher.
	regConfig := registrationConfig(t, mr.Status.RegistrationURL)
	hosts := map[string]*host{} // by inventory name
	for i := 1; i <= 2; i++ {
		h := registerHost(t, regConfig, fmt.Sprintf("52:54:00:0c:a9:%02x", i))
		mi := inventoryWithSecret(t, ns, h.root)
		hosts[mi] = h
	}
	// Each agent applies the empty plan through Rancher's local cluster
	// proxy with its own token, and the inventory becomes available.
	for name := range hosts {
		waitInventory(t, ns, name, 2*time.Minute, func(mi *elementalv1.MachineInventory) error {
			if mi.Status.Phase != "Available" {
				return fmt.Errorf("phase %q", mi.Status.Phase)
			}
			return nil
		})
	}

	// Admin: a cluster whose pool points at our template. Rancher would
	// create these; the real CAPI controllers take it from there.
	createTemplate(t, ns, "pool-a")
	createUnstructured(t, clustersGVR, ns, map[string]interface{}{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
		"metadata": map[string]interface{}{"name": "fire", "namespace": ns},
		"spec":     map[string]interface{}{"clusterNetwork": map[string]interface{}{"pods": map[string]interface{}{"cidrBlocks": []interface{}{"10.42.0.0/16"}}}},
	})
	_, err = env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "fire-bootstrap"},
		Type:       "rke.cattle.io/bootstrap",
		Data:       map[string][]byte{"value": []byte(bootstrapScript)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	createMachineDeployment(t, ns, "fire-pool-a", "pool-a", 2)

	var adopted map[string]string // selector -> inventory
	t.Run("CAPI clones two selectors; each gets its own inventory, bootstrapped by the real agent", func(t *testing.T) {
		adopted = waitReadySelectors(t, ns, "fire-pool-a", 2)
		seen := map[string]bool{}
		for mis, mi := range adopted {
			require.False(t, seen[mi], "inventory %s held by two selectors", mi)
			seen[mi] = true
			require.Contains(t, hosts, mi)
			inv, err := el.MachineInventory().Get(ns, mi, metav1.GetOptions{})
			require.NoError(t, err)
			owner := metav1.GetControllerOf(inv)
			require.NotNil(t, owner)
			assert.Equal(t, mis, owner.Name)
			// The bootstrap script really ran on that host, named after its inventory.
			a := hosts[mi].agent
			assert.Equal(t, "installed on "+mi+"\n", readSandbox(t, a, "/var/lib/rancher/installed"))
			assert.FileExists(t, a.HostPath("/var/lib/rancher/bootstrap_done"))
			assert.Equal(t, "node-name: "+mi, readSandbox(t, a, "/etc/rancher/rke2/config.yaml.d/99-elemental-name.yaml"))
			// The selector is owned by its Machine, which CAPI created.
			sel, err := el.MachineInventorySelector().Get(ns, mis, metav1.GetOptions{})
			require.NoError(t, err)
			ref := metav1.GetControllerOf(sel)
			require.NotNil(t, ref)
			assert.Equal(t, "Machine", ref.Kind)
			assert.True(t, sel.Status.Initialization.Provisioned, "status.initialization.provisioned")
		}
	})

	t.Run("Rancher sets the provider ID; the Machines report infrastructure provisioned", func(t *testing.T) {
		for mis, mi := range adopted {
			// Rancher's machinenodelookup does a full-object update.
			testenv.Eventually(t, 30*time.Second, func() error {
				sel, err := el.MachineInventorySelector().Get(ns, mis, metav1.GetOptions{})
				if err != nil {
					return err
				}
				sel = sel.DeepCopy()
				sel.Spec.ProviderID = "rke2://" + mi
				_, err = el.MachineInventorySelector().Update(sel)
				return err
			})
		}
		for mis, mi := range adopted {
			testenv.Eventually(t, 2*time.Minute, func() error {
				m, err := dyn.Resource(machinesGVR).Namespace(ns).Get(ctx, mis, metav1.GetOptions{})
				if err != nil {
					return err
				}
				provisioned, _, _ := unstructured.NestedBool(m.Object, "status", "initialization", "infrastructureProvisioned")
				providerID, _, _ := unstructured.NestedString(m.Object, "spec", "providerID")
				if !provisioned || providerID != "rke2://"+mi {
					return fmt.Errorf("machine %s: infrastructureProvisioned=%v providerID=%q", mis, provisioned, providerID)
				}
				return nil
			})
			sel, err := el.MachineInventorySelector().Get(ns, mis, metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, "rke2://"+mi, sel.Spec.ProviderID, "the operator never clobbers Rancher's provider ID")
			assert.True(t, sel.Status.Ready)
		}
	})

	var released, kept string
	t.Run("scaling down returns the host to the pool after the release plan ran", func(t *testing.T) {
		_, err := dyn.Resource(mdGVR).Namespace(ns).Patch(ctx, "fire-pool-a", types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{})
		require.NoError(t, err)
		testenv.Eventually(t, 2*time.Minute, func() error {
			left := ownedSelectors(t, ns, "fire-pool-a")
			if len(left) != 1 {
				return fmt.Errorf("%d selectors left", len(left))
			}
			for mis, mi := range adopted {
				if mis == left[0].Name {
					kept = mi
				} else {
					released = mi
				}
			}
			return nil
		})
		mi := waitInventory(t, ns, released, 2*time.Minute, func(mi *elementalv1.MachineInventory) error {
			if len(mi.OwnerReferences) != 0 || mi.Status.Phase != "Available" {
				return fmt.Errorf("owners %v, phase %q", mi.OwnerReferences, mi.Status.Phase)
			}
			return nil
		})
		assert.NotEqual(t, elementalv1.PlanTypeBootstrap, mi.Status.Plan.Type, "back on a non-bootstrap plan")
		a := hosts[released].agent
		assert.Equal(t, "uninstalled\n", readSandbox(t, a, "/var/lib/rancher/uninstalled"), "the release plan ran the uninstaller")
		assert.NoFileExists(t, a.HostPath("/var/lib/rancher/bootstrap_done"))
		assert.NoFileExists(t, a.HostPath("/var/lib/rancher/installed"))
		assert.NoFileExists(t, a.HostPath("/etc/rancher/rke2/config.yaml.d/99-elemental-name.yaml"))
		// The other host is untouched.
		assert.FileExists(t, hosts[kept].agent.HostPath("/var/lib/rancher/bootstrap_done"))
	})

	t.Run("another pool adopts the released host and bootstraps it again", func(t *testing.T) {
		createTemplate(t, ns, "pool-b")
		createMachineDeployment(t, ns, "fire-pool-b", "pool-b", 1)
		got := waitReadySelectors(t, ns, "fire-pool-b", 1)
		for _, mi := range got {
			assert.Equal(t, released, mi)
		}
		assert.Equal(t, "installed on "+released+"\n", readSandbox(t, hosts[released].agent, "/var/lib/rancher/installed"))
	})

	t.Run("a failing install script shows on the selector with the agent's output; the Machine waits", func(t *testing.T) {
		// A third host joins only now, so it is the only free one.
		h := registerHost(t, regConfig, "52:54:00:0c:a9:03")
		third := inventoryWithSecret(t, ns, h.root)
		waitInventory(t, ns, third, 2*time.Minute, func(mi *elementalv1.MachineInventory) error {
			if mi.Status.Phase != "Available" {
				return fmt.Errorf("phase %q", mi.Status.Phase)
			}
			return nil
		})
		_, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "broken-bootstrap"},
			Type:       "rke.cattle.io/bootstrap",
			Data:       map[string][]byte{"value": []byte("#!/bin/sh\necho no disk for rke2\nexit 7\n")},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		createTemplate(t, ns, "pool-c")
		createMachineDeployment(t, ns, "fire-pool-c", "pool-c", 1, "broken-bootstrap")
		var sel elementalv1.MachineInventorySelector
		testenv.Eventually(t, 2*time.Minute, func() error {
			sels := ownedSelectors(t, ns, "fire-pool-c")
			if len(sels) != 1 {
				return fmt.Errorf("%d selectors", len(sels))
			}
			sel = sels[0]
			c := meta.FindStatusCondition(sel.Status.Conditions, elementalv1.ConditionReady)
			if c == nil || c.Reason != elementalv1.ReasonBootstrapPlanFailed {
				return fmt.Errorf("ready condition %+v", c)
			}
			return nil
		})
		assert.False(t, sel.Status.Ready)
		require.NotNil(t, sel.Status.MachineInventoryRef)
		assert.Equal(t, third, sel.Status.MachineInventoryRef.Name)
		assert.Contains(t, meta.FindStatusCondition(sel.Status.Conditions, elementalv1.ConditionReady).Message, "no disk for rke2")
		assert.NoFileExists(t, h.agent.HostPath("/var/lib/rancher/bootstrap_done"), "the guard marks only a successful install")
		testenv.Eventually(t, 30*time.Second, func() error {
			events, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + sel.Name})
			if err != nil {
				return err
			}
			for _, e := range events.Items {
				if e.Type == corev1.EventTypeWarning && e.Reason == elementalv1.ReasonBootstrapPlanFailed {
					return nil
				}
			}
			return fmt.Errorf("no warning event among %d", len(events.Items))
		})
		m, err := dyn.Resource(machinesGVR).Namespace(ns).Get(ctx, sel.Name, metav1.GetOptions{})
		require.NoError(t, err)
		provisioned, _, _ := unstructured.NestedBool(m.Object, "status", "initialization", "infrastructureProvisioned")
		assert.False(t, provisioned, "CAPI must not see a failed host as provisioned")
	})
}

// rancherHTTP trusts Rancher's CA only: an admin's tool talking to Rancher.
func rancherHTTP() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rancher.CAPEM)
	return &http.Client{
		Timeout:       time.Minute,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// rancherGet is a plain GET of url (which must be on Rancher's URL).
func rancherGet(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	require.True(t, strings.HasPrefix(url, rancher.URL+"/"), url)
	resp, err := rancherHTTP().Get(url)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(body)
}

// registrationConfig is what an ISO is built with: the plain GET of a
// registration URL, through Rancher and the tunnel. It must point hosts at
// Rancher's URL with Rancher's cacerts and nothing else.
func registrationConfig(t *testing.T, url string) []byte {
	t.Helper()
	code, header, body := rancherGet(t, url)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, header.Get("Content-Type"), "application/yaml")
	var doc protocol.RegistrationDocument
	require.NoError(t, yaml.Unmarshal([]byte(body), &doc), body)
	reg := doc.Elemental.Registration
	assert.Equal(t, url, reg.URL)
	assert.Equal(t, string(rancher.CAPEM), reg.CACert, "hosts are given Rancher's cacerts, and only that")
	assert.Equal(t, "mac", reg.Auth)
	return []byte(body)
}

// registerHost runs our elemental-register client against a fake host tree
// whose config is the downloaded registration config, verbatim, and starts
// the real agent from the connection file it wrote.
func registerHost(t *testing.T, config []byte, mac string) *host {
	t.Helper()
	root, err := registerOnly(t, config, mac)
	require.NoError(t, err)
	conn, err := os.ReadFile(filepath.Join(root, reghost.ConnectionInfoPath))
	require.NoError(t, err)
	a, err := testenv.StartAgent(testenv.AgentOptions{ConnectionInfo: conn, Stubs: map[string]string{"hostnamectl": hostnamectlStub}})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent of %s:\n%s", mac, testenv.Tail(a.Output(), 3000))
		}
		a.Stop()
	})
	return &host{root: root, agent: a}
}

// registerOnly is one run of our client on a new host tree; it returns the
// tree's root and how the run ended.
func registerOnly(t *testing.T, config []byte, mac string) (string, error) {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"sys/class/net/eth0/address":    mac + "\n",
		"sys/class/dmi/id/product_uuid": "4c4c4544-0000-1000-8000-" + strings.ReplaceAll(mac, ":", "") + "\n",
		"etc/hostname":                  "edge\n",
		"oem/registration/config.yaml":  string(config),
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			return root, err
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return root, err
		}
	}
	_, err := reghost.Run(context.Background(), reghost.Options{Root: root, Install: true, NoToolkit: true})
	return root, err
}

// inventoryWithSecret is the inventory the host's connection file names.
// The agent's kubeconfig in that file must be Rancher's local cluster URL
// with exactly the CA the host was given: the agent can reach the
// kube-apiserver in no other way.
func inventoryWithSecret(t *testing.T, ns, root string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, reghost.ConnectionInfoPath))
	require.NoError(t, err)
	var conn struct {
		KubeConfig string `json:"kubeConfig"`
		Namespace  string `json:"namespace"`
		SecretName string `json:"secretName"`
	}
	require.NoError(t, json.Unmarshal(data, &conn))
	require.Equal(t, ns, conn.Namespace)
	kc, err := clientcmd.Load([]byte(conn.KubeConfig))
	require.NoError(t, err)
	require.Len(t, kc.Clusters, 1)
	for _, c := range kc.Clusters {
		require.Equal(t, rancher.URL+"/k8s/clusters/local", c.Server, "agents reach the apiserver through Rancher")
		require.Equal(t, string(rancher.CAPEM), string(c.CertificateAuthorityData), "the agent trusts Rancher's CA only")
	}
	envs, err := os.ReadFile(filepath.Join(root, reghost.AgentEnvsPath))
	require.NoError(t, err)
	require.Equal(t, "CATTLE_AGENT_STRICT_VERIFY=\"true\"\n", string(envs), "Rancher has cacerts and no agent-tls-mode: strict")
	return conn.SecretName
}

func waitInventory(t *testing.T, ns, name string, timeout time.Duration, check func(*elementalv1.MachineInventory) error) *elementalv1.MachineInventory {
	t.Helper()
	var mi *elementalv1.MachineInventory
	testenv.Eventually(t, timeout, func() error {
		var err error
		if mi, err = el.MachineInventory().Get(ns, name, metav1.GetOptions{}); err != nil {
			return err
		}
		return check(mi)
	})
	return mi
}

func createTemplate(t *testing.T, ns, name string) {
	t.Helper()
	_, err := el.MachineInventorySelectorTemplate().Create(&elementalv1.MachineInventorySelectorTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: elementalv1.MachineInventorySelectorTemplateSpec{Template: elementalv1.MachineInventorySelectorTemplateResource{
			Spec: elementalv1.MachineInventorySelectorSpec{Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}}},
		}},
	})
	require.NoError(t, err)
}

// createMachineDeployment makes a v1beta2 MachineDeployment the way Rancher's
// provisioning does: no webhooks here, so every default is explicit.
func createMachineDeployment(t *testing.T, ns, name, template string, replicas int64, bootstrap ...string) {
	t.Helper()
	labels := map[string]interface{}{"cluster.x-k8s.io/cluster-name": "fire", "pool": name}
	data := "fire-bootstrap"
	if len(bootstrap) > 0 {
		data = bootstrap[0]
	}
	createUnstructured(t, mdGVR, ns, map[string]interface{}{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "MachineDeployment",
		"metadata": map[string]interface{}{"name": name, "namespace": ns},
		"spec": map[string]interface{}{
			"clusterName": "fire",
			"replicas":    replicas,
			"selector":    map[string]interface{}{"matchLabels": labels},
			"rollout": map[string]interface{}{"strategy": map[string]interface{}{
				"type": "RollingUpdate", "rollingUpdate": map[string]interface{}{"maxSurge": int64(1), "maxUnavailable": int64(0)},
			}},
			"template": map[string]interface{}{
				"metadata": map[string]interface{}{"labels": labels},
				"spec": map[string]interface{}{
					"clusterName":       "fire",
					"bootstrap":         map[string]interface{}{"dataSecretName": data},
					"infrastructureRef": map[string]interface{}{"apiGroup": "elemental.cattle.io", "kind": "MachineInventorySelectorTemplate", "name": template},
				},
			},
		},
	})
}

func createUnstructured(t *testing.T, gvr schema.GroupVersionResource, ns string, obj map[string]interface{}) {
	t.Helper()
	_, err := dyn.Resource(gvr).Namespace(ns).Create(context.Background(), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// ownedSelectors are the selectors of a MachineDeployment's Machines
// (selectors carry the Machine's labels, copied by CAPI).
func ownedSelectors(t *testing.T, ns, deployment string) []elementalv1.MachineInventorySelector {
	t.Helper()
	list, err := el.MachineInventorySelector().List(ns, metav1.ListOptions{LabelSelector: "pool=" + deployment})
	require.NoError(t, err)
	var out []elementalv1.MachineInventorySelector
	for _, s := range list.Items {
		if s.DeletionTimestamp == nil {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// waitReadySelectors waits for n ready selectors of a deployment and
// returns selector -> inventory.
func waitReadySelectors(t *testing.T, ns, deployment string, n int) map[string]string {
	t.Helper()
	out := map[string]string{}
	testenv.Eventually(t, 3*time.Minute, func() error {
		sels := ownedSelectors(t, ns, deployment)
		if len(sels) != n {
			return fmt.Errorf("%d selectors, want %d", len(sels), n)
		}
		for _, s := range sels {
			if !s.Status.Ready || s.Status.MachineInventoryRef == nil {
				return fmt.Errorf("selector %s not ready: %+v", s.Name, s.Status.Conditions)
			}
			out[s.Name] = s.Status.MachineInventoryRef.Name
		}
		return nil
	})
	return out
}

func readSandbox(t *testing.T, a *testenv.Agent, path string) string {
	t.Helper()
	p := a.HostPath(path)
	require.NotEmpty(t, p, "agent not running")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(data)
}
