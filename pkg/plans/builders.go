package plans

import (
	"encoding/base64"
	"sort"
	"strings"
	"time"

	rplan "github.com/rancher/rancher/pkg/plan"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// bootstrapGuard runs the install script once per claim: the agent re-runs
// one-time instructions at every start (docs/contracts.md, Plan Secret).
const bootstrapGuard = "[ -f /var/lib/rancher/bootstrap_done ] || /var/lib/rancher/bootstrap.sh && touch /var/lib/rancher/bootstrap_done"

var dropIns = []string{
	"/etc/rancher/rke2/config.yaml.d/99-elemental-name.yaml",
	"/etc/rancher/rke2/config.yaml.d/99-elemental-inventory-labels.yaml",
	"/etc/rancher/k3s/config.yaml.d/99-elemental-name.yaml",
	"/etc/rancher/k3s/config.yaml.d/99-elemental-inventory-labels.yaml",
}

func file(path, perm string, content []byte) rplan.File {
	return rplan.File{Path: path, Permissions: perm, Content: base64.StdEncoding.EncodeToString(content)}
}

func instruction(name, command string, args ...string) rplan.OneTimeInstruction {
	return rplan.OneTimeInstruction{
		CommonInstruction: rplan.CommonInstruction{Name: name, Command: command, Args: args},
		SaveOutput:        true,
	}
}

// Bootstrap builds the bootstrap plan for inventory name with Rancher's
// install script and the inventory's labels. The same inputs always give the
// same bytes. dropped lists label keys the kubelet would refuse.
func Bootstrap(name string, script []byte, labels map[string]string) (plan []byte, dropped []string, err error) {
	var keys []string
	for k := range labels {
		if NodeLabelAllowed(k) {
			keys = append(keys, k)
		} else {
			dropped = append(dropped, k)
		}
	}
	sort.Strings(keys)
	sort.Strings(dropped)
	var nodeLabels strings.Builder
	if len(keys) == 0 {
		nodeLabels.WriteString("node-label+: []\n")
	} else {
		nodeLabels.WriteString("node-label+:\n")
		for _, k := range keys {
			nodeLabels.WriteString("    - " + k + "=" + labels[k] + "\n")
		}
	}
	nodeName := []byte("node-name: " + name)
	p := rplan.Plan{
		Files: []rplan.File{
			file("/var/lib/rancher/bootstrap.sh", "0700", script),
			file(dropIns[0], "0600", nodeName),
			file(dropIns[1], "0600", []byte(nodeLabels.String())),
			file(dropIns[2], "0600", nodeName),
			file(dropIns[3], "0600", []byte(nodeLabels.String())),
			file("/usr/local/etc/hostname", "0644", []byte(name)),
			file("/run/elemental/persistent/etc/hostname", "0644", []byte(name)),
		},
		OneTimeInstructions: []rplan.OneTimeInstruction{
			instruction("configure hostname", "hostnamectl", "set-hostname", "--transient", name),
			instruction("bootstrap", "bash", "-c", bootstrapGuard),
		},
	}
	plan, err = Encode(p)
	return plan, dropped, err
}

// NodeLabelAllowed reports whether the kubelet accepts key in --node-labels
// (docs/contracts.md, Plan Secret), and leaves out our internal identity label.
func NodeLabelAllowed(key string) bool {
	if key == elementalv1.IdentityHashLabel {
		return false
	}
	prefix, _, found := strings.Cut(key, "/")
	if !found {
		return true
	}
	restricted := prefix == "kubernetes.io" || prefix == "k8s.io" ||
		strings.HasSuffix(prefix, ".kubernetes.io") || strings.HasSuffix(prefix, ".k8s.io")
	if !restricted {
		return true
	}
	if prefix == "kubelet.kubernetes.io" || prefix == "node.kubernetes.io" {
		return true
	}
	switch key {
	case "kubernetes.io/hostname", "kubernetes.io/instance-type", "kubernetes.io/os", "kubernetes.io/arch",
		"beta.kubernetes.io/instance-type", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
		"failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
		"topology.kubernetes.io/zone", "topology.kubernetes.io/region":
		return true
	}
	return false
}

const resetCloudConfig = `name: Elemental Reset
stages:
  network.after:
    - name: Runs elemental reset
      if: '[ -f /run/cos/recovery_mode ] || [ -f /run/elemental/recovery_mode ]'
      commands:
        - systemctl start elemental-register-reset
`

// Reset is upstream's reset plan (docs/contracts.md, Plan Secret). networkConfigured adds the
// step that restores the first-boot network config.
func Reset(networkConfigured bool) ([]byte, error) {
	p := rplan.Plan{Files: []rplan.File{file("/oem/reset-cloud-config.yaml", "0600", []byte(resetCloudConfig))}}
	if networkConfigured {
		p.OneTimeInstructions = append(p.OneTimeInstructions, plainInstruction("restore first boot config", "elemental-register", "--debug", "--reset-network"))
	}
	p.OneTimeInstructions = append(p.OneTimeInstructions,
		plainInstruction("configure next boot to recovery mode", "grub2-editenv", "/oem/grubenv", "set", "next_entry=recovery"),
		// One minute leaves the agent time to report the plan applied.
		plainInstruction("schedule reboot", "shutdown", "-r", "+1"),
	)
	return Encode(p)
}

func plainInstruction(name, command string, args ...string) rplan.OneTimeInstruction {
	return rplan.OneTimeInstruction{CommonInstruction: rplan.CommonInstruction{Name: name, Command: command, Args: args}}
}

// UnmanagedReset is the marker-only reset for os.unmanaged hosts (docs/contracts.md, Plan Secret).
func UnmanagedReset(now time.Time) ([]byte, error) {
	return Encode(rplan.Plan{Files: []rplan.File{
		file("/var/lib/elemental/.unmanaged_reset", "0600", []byte(now.UTC().Format("2006-01-02 15:04:05"))),
	}})
}

var uninstallers = []string{
	"/usr/local/bin/rke2-uninstall.sh",
	"/opt/rke2/bin/rke2-uninstall.sh",
	"/usr/local/bin/k3s-uninstall.sh",
	"/usr/local/bin/k3s-agent-uninstall.sh",
	"/opt/bin/k3s-uninstall.sh",
	"/opt/bin/k3s-agent-uninstall.sh",
	"/usr/local/bin/rancher-system-agent-uninstall.sh",
}

// ReleaseScript uninstalls what a bootstrap installed and removes its files,
// idempotently, so the host can be claimed again (docs/contracts.md, Plan Secret).
func ReleaseScript() string {
	var b strings.Builder
	b.WriteString("set -u\n")
	for _, u := range uninstallers {
		b.WriteString("if [ -x " + u + " ]; then " + u + " || exit 1; fi\n")
	}
	b.WriteString("rm -f /var/lib/rancher/bootstrap_done /var/lib/rancher/bootstrap.sh")
	for _, d := range dropIns {
		b.WriteString(" " + d)
	}
	b.WriteString("\nexit 0\n")
	return b.String()
}

// Release is the cleanup plan that returns a host to the pool.
func Release() ([]byte, error) {
	return Encode(rplan.Plan{OneTimeInstructions: []rplan.OneTimeInstruction{
		instruction("release", "bash", "-c", ReleaseScript()),
	}})
}
