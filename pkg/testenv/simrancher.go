package testenv

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	capiv1beta2 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	capictl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/cluster.x-k8s.io"
	capiv1beta2ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/cluster.x-k8s.io/v1beta2"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalv1ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
)

// SimulatedRancher does what Rancher's provisioning and the CAPI MachineSet
// controller do for one machine (docs/architecture.md, pkg/testenv): a bootstrap Secret, a
// Machine, and a selector cloned from a template, owned by the Machine.
type SimulatedRancher struct {
	Client    kubernetes.Interface
	Machines  capiv1beta2ctl.MachineClient
	Selectors elementalv1ctl.MachineInventorySelectorClient
}

// NewSimulatedRancher builds the clients it needs.
func NewSimulatedRancher(cfg *rest.Config) (*SimulatedRancher, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	capi, err := capictl.NewFactoryFromConfig(cfg)
	if err != nil {
		return nil, err
	}
	el, err := elementalctl.NewFactoryFromConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &SimulatedRancher{Client: client, Machines: capi.Cluster().V1beta2().Machine(), Selectors: el.Elemental().V1beta1().MachineInventorySelector()}, nil
}

// MachineOptions shape one simulated machine.
type MachineOptions struct {
	Cluster  string
	Selector elementalv1.LabelSelector
	// Script is the bootstrap Secret's value; empty means no bootstrap data yet.
	Script string
	// OwnerAPIVersion of the selector's Machine ownerRef (default cluster.x-k8s.io/v1beta2).
	OwnerAPIVersion string
	// TopologySpread, if set, is the selector's spec.topologySpread.
	TopologySpread *elementalv1.TopologySpread
}

// CreateMachine creates the bootstrap Secret (if Script is set), the Machine
// and its selector; it returns the selector.
func (r *SimulatedRancher) CreateMachine(ctx context.Context, ns, name string, opts MachineOptions) (*elementalv1.MachineInventorySelector, error) {
	if opts.Cluster == "" {
		opts.Cluster = "cluster"
	}
	if opts.OwnerAPIVersion == "" {
		opts.OwnerAPIVersion = capiv1beta2.GroupVersion.String()
	}
	machine := &capiv1beta2.Machine{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"cluster.x-k8s.io/cluster-name": opts.Cluster}},
		Spec: capiv1beta2.MachineSpec{
			ClusterName: opts.Cluster,
			InfrastructureRef: capiv1beta2.ContractVersionedObjectReference{
				APIGroup: elementalv1.SchemeGroupVersion.Group, Kind: "MachineInventorySelector", Name: name,
			},
		},
	}
	if opts.Script != "" {
		if err := r.CreateBootstrapSecret(ctx, ns, name, opts.Script); err != nil {
			return nil, err
		}
		secretName := name + "-machine-bootstrap"
		machine.Spec.Bootstrap.DataSecretName = &secretName
	} else {
		machine.Spec.Bootstrap.ConfigRef = capiv1beta2.ContractVersionedObjectReference{APIGroup: "rke.cattle.io", Kind: "RKEBootstrap", Name: name}
	}
	machine, err := r.Machines.Create(machine)
	if err != nil {
		return nil, fmt.Errorf("creating Machine: %w", err)
	}
	controller, block := true, true
	mis := &elementalv1.MachineInventorySelector{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{"cluster.x-k8s.io/cluster-name": opts.Cluster},
			Annotations: map[string]string{
				"cluster.x-k8s.io/cloned-from-name":      "template",
				"cluster.x-k8s.io/cloned-from-groupkind": "MachineInventorySelectorTemplate.elemental.cattle.io",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: opts.OwnerAPIVersion, Kind: "Machine", Name: machine.Name, UID: machine.UID,
				Controller: &controller, BlockOwnerDeletion: &block,
			}},
		},
		Spec: elementalv1.MachineInventorySelectorSpec{Selector: opts.Selector, TopologySpread: opts.TopologySpread},
	}
	return r.Selectors.Create(mis)
}

// CreateBootstrapSecret is what Rancher's RKEBootstrap controller writes.
func (r *SimulatedRancher) CreateBootstrapSecret(ctx context.Context, ns, machine, script string) error {
	_, err := r.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: machine + "-machine-bootstrap"},
		Type:       "rke.cattle.io/bootstrap",
		Data:       map[string][]byte{"value": []byte(script)},
	}, metav1.CreateOptions{})
	return err
}

// SetBootstrapData points a Machine at its bootstrap Secret, late.
func (r *SimulatedRancher) SetBootstrapData(ns, machine string) error {
	m, err := r.Machines.Get(ns, machine, metav1.GetOptions{})
	if err != nil {
		return err
	}
	name := machine + "-machine-bootstrap"
	m.Spec.Bootstrap.DataSecretName = &name
	_, err = r.Machines.Update(m)
	return err
}
