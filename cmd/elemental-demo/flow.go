package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/register/client"
	"github.com/elemental-operator/elemental-operator/pkg/register/host"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

const demoNamespace = "fleet-default"

// seedFlow is what an admin, three hosts and Rancher do, narrated:
// registration → inventories → a machine pool → adoption → bootstrap →
// ready → scale-down returning a host to the pool. Hosts register at
// Rancher's URL, through its APIService tunnel. It returns the registration
// URL.
func seedFlow(ctx context.Context, env *testenv.Env, rancherServer *testenv.Rancher) (string, error) {
	f, err := elementalctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		return "", err
	}
	el := f.Elemental().V1beta1()
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoNamespace}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}

	step("admin: creating MachineRegistration %s/fire-nodes", demoNamespace)
	if _, err := el.MachineRegistration().Create(&elementalv1.MachineRegistration{
		ObjectMeta: metav1.ObjectMeta{Namespace: demoNamespace, Name: "fire-nodes"},
		Spec: elementalv1.MachineRegistrationSpec{
			MachineName:            "fire-${Random/Hex/6}",
			MachineInventoryLabels: map[string]string{"element": "fire", "cpus": "${CPU/TotalCores}"},
			Config:                 elementalv1.Config{Elemental: elementalv1.Elemental{Registration: elementalv1.Registration{Auth: "mac"}}},
		},
	}); err != nil {
		return "", err
	}
	var mr *elementalv1.MachineRegistration
	if err := poll(ctx, time.Minute, func() (bool, error) {
		mr, err = el.MachineRegistration().Get(demoNamespace, "fire-nodes", metav1.GetOptions{})
		return err == nil && meta.IsStatusConditionTrue(mr.Status.Conditions, elementalv1.ConditionReady), nil
	}); err != nil {
		return "", fmt.Errorf("registration never became ready: %w", err)
	}
	step("registration ready; hosts register at %s through Rancher's APIService tunnel",
		strings.Replace(mr.Status.RegistrationURL, mr.Status.RegistrationToken, "<token>", 1))

	reg, err := fetchRegistrationConfig(ctx, rancherServer, mr.Status.RegistrationURL)
	if err != nil {
		return "", fmt.Errorf("fetching the registration config: %w", err)
	}
	step("ISO builder: a plain GET of that URL through Rancher returns the hosts' config: auth %s, url at Rancher, ca-cert = Rancher's cacerts: %t",
		reg.Auth, strings.TrimSpace(reg.CACert) == strings.TrimSpace(string(rancherServer.CAPEM)))
	// Each host's agent is simulated: it answers its plan Secret like
	// rancher-system-agent would, without running anything.
	testenv.RunSimulatedAgents(ctx, env.Client, demoNamespace, 4)
	for i, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"} {
		_, err := client.Register(ctx, client.Request{
			URL: reg.URL, CACert: reg.CACert, Authorization: client.PlainAuth(mac),
			Smbios:     map[string]interface{}{"System Information": map[string]interface{}{"Manufacturer": "QEMU", "UUID": fmt.Sprintf("uuid-%d", i)}},
			SystemData: map[string]interface{}{"CPU": map[string]interface{}{"TotalCores": fmt.Sprint(4 * (i + 1))}}, // leaves are strings, as the real client sends them
			Labels:     map[string]string{"InternalIP": fmt.Sprintf("192.168.122.%d", 50+i)},
		})
		if err != nil {
			return "", fmt.Errorf("host %s: %w", mac, err)
		}
		step("host %s registered through Rancher (PLAIN/mac auth)", mac)
	}
	if err := poll(ctx, time.Minute, func() (bool, error) {
		return countPhase(el, "Available") == 3, nil
	}); err != nil {
		return "", fmt.Errorf("inventories never became available: %w", err)
	}
	printInventories(el)

	step("admin: creating MachineInventorySelectorTemplate fire-pool (element=fire)")
	if _, err := el.MachineInventorySelectorTemplate().Create(&elementalv1.MachineInventorySelectorTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: demoNamespace, Name: "fire-pool"},
		Spec: elementalv1.MachineInventorySelectorTemplateSpec{Template: elementalv1.MachineInventorySelectorTemplateResource{
			Spec: elementalv1.MachineInventorySelectorSpec{Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}}},
		}},
	}); err != nil {
		return "", err
	}
	_ = poll(ctx, 10*time.Second, func() (bool, error) {
		t, err := el.MachineInventorySelectorTemplate().Get(demoNamespace, "fire-pool", metav1.GetOptions{})
		return err == nil && t.Status.AvailableInventories == 3, nil
	})
	step("the template says: 3 inventories match, 3 available")

	capi, err := testenv.NewSimulatedRancher(env.Config)
	if err != nil {
		return "", err
	}
	step("simulated Rancher/CAPI: cluster 'fire' with a pool of 2 machines (bootstrap Secrets, Machines, selectors)")
	for _, m := range []string{"fire-pool1-a", "fire-pool1-b"} {
		if _, err := capi.CreateMachine(ctx, demoNamespace, m, testenv.MachineOptions{
			Cluster: "fire", Selector: elementalv1.LabelSelector{MatchLabels: map[string]string{"element": "fire"}},
			Script: "#!/bin/sh\n# rancher-system-agent install script\n",
		}); err != nil {
			return "", err
		}
	}
	if err := poll(ctx, time.Minute, func() (bool, error) {
		ready := 0
		for _, m := range []string{"fire-pool1-a", "fire-pool1-b"} {
			if mis, err := el.MachineInventorySelector().Get(demoNamespace, m, metav1.GetOptions{}); err == nil && mis.Status.Ready {
				ready++
			}
		}
		return ready == 2, nil
	}); err != nil {
		return "", fmt.Errorf("selectors never became ready: %w", err)
	}
	for _, m := range []string{"fire-pool1-a", "fire-pool1-b"} {
		mis, _ := el.MachineInventorySelector().Get(demoNamespace, m, metav1.GetOptions{})
		step("selector %s adopted %s; bootstrap plan %s… applied by its agent; ready", m, mis.Status.MachineInventoryRef.Name, mis.Status.BootstrapPlanChecksum[:12])
	}
	printInventories(el)

	step("scale-down: CAPI deletes selector fire-pool1-b")
	mis, _ := el.MachineInventorySelector().Get(demoNamespace, "fire-pool1-b", metav1.GetOptions{})
	released := mis.Status.MachineInventoryRef.Name
	if err := el.MachineInventorySelector().Delete(demoNamespace, "fire-pool1-b", nil); err != nil {
		return "", err
	}
	if err := poll(ctx, time.Minute, func() (bool, error) {
		mi, err := el.MachineInventory().Get(demoNamespace, released, metav1.GetOptions{})
		return err == nil && mi.Status.Phase == "Available" && len(mi.OwnerReferences) == 0, nil
	}); err != nil {
		return "", fmt.Errorf("inventory never returned to the pool: %w", err)
	}
	step("%s ran the release plan, then the empty plan, and is back in the pool", released)
	printInventories(el)
	return mr.Status.RegistrationURL, nil
}

// fetchRegistrationConfig is what an ISO builder does with the registration
// URL: a plain GET, trusting Rancher's certificate, returns the
// elemental.registration block the hosts boot with.
func fetchRegistrationConfig(ctx context.Context, rancherServer *testenv.Rancher, url string) (host.Registration, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rancherServer.CAPEM)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return host.Registration{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return host.Registration{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return host.Registration{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return host.Registration{}, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	var cfg host.Config
	if err := yaml.Unmarshal(body, &cfg); err != nil {
		return host.Registration{}, err
	}
	if cfg.Elemental.Registration.URL == "" {
		return host.Registration{}, fmt.Errorf("GET %s: no elemental.registration.url in the reply", url)
	}
	return cfg.Elemental.Registration, nil
}

func poll(ctx context.Context, timeout time.Duration, check func() (bool, error)) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return check() })
}

func countPhase(el elementalv1ctl.Interface, phase string) int {
	list, err := el.MachineInventory().List(demoNamespace, metav1.ListOptions{})
	if err != nil {
		return 0
	}
	n := 0
	for _, mi := range list.Items {
		if mi.Status.Phase == phase {
			n++
		}
	}
	return n
}

// printInventories is `kubectl get machineinventories` in short.
func printInventories(el elementalv1ctl.Interface) {
	list, err := el.MachineInventory().List(demoNamespace, metav1.ListOptions{})
	if err != nil {
		return
	}
	fmt.Printf("    %-14s %-12s %-10s %-16s %s\n", "INVENTORY", "PHASE", "PLAN", "SELECTOR", "LABELS")
	for _, mi := range list.Items {
		selector, plan := "", ""
		for _, ref := range mi.OwnerReferences {
			if ref.Kind == "MachineInventorySelector" {
				selector = ref.Name
			}
		}
		if mi.Status.Plan != nil {
			plan = mi.Status.Plan.Type
		}
		fmt.Printf("    %-14s %-12s %-10s %-16s element=%s,cpus=%s\n", mi.Name, mi.Status.Phase, plan, selector, mi.Labels["element"], mi.Labels["cpus"])
	}
}
