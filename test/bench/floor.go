package main

// The floor: a minimal controller that makes only the writes the contract
// needs, with no safety at all (no finalizer, no Role/RoleBinding, no
// leader election, no compare-and-swap retries beyond what the API forces,
// no events, no recovery after a crash). It exists to measure, in the same
// run and on the same workload, how fast adoption can be on this machine;
// it must never be used against a real cluster.
//
// Writes, per inventory in phase 1: the plan Secret (create, plan `{}`) and
// the status once the agent applied it (phase Available, Ready). Per
// adoption: the claim (Update with a controller ownerRef to the selector),
// the bootstrap plan (merge patch of the plan Secret) and the selector's
// status (ready and provisioned, once the agent applied the plan).

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rancher/lasso/pkg/cache"
	"github.com/rancher/lasso/pkg/controller"
	"github.com/rancher/wrangler/v3/pkg/generic"
	"github.com/rancher/wrangler/v3/pkg/schemes"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/controllers"
	capifactory "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/cluster.x-k8s.io"
	capictl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/cluster.x-k8s.io/v1beta2"
	elementalfactory "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/plans"

	corefactory "github.com/rancher/wrangler/v3/pkg/generated/controllers/core"
	corectl "github.com/rancher/wrangler/v3/pkg/generated/controllers/core/v1"
)

type floor struct {
	inventories elementalctl.MachineInventoryController
	selectors   elementalctl.MachineInventorySelectorController
	machines    capictl.MachineCache
	secrets     corectl.SecretCache
	k8s         kubernetes.Interface

	mu sync.Mutex
	// free is a stack of inventories that may be handed out; taken marks
	// those handed out by this process (the only "decider").
	free  []string
	taken map[string]bool
	// waiters are selectors that found the pool empty.
	waiters []string
	// claims: selector UID → inventory name; bySecret: inventory → selector.
	claims  map[types.UID]string
	owners  map[string]string
	planned map[types.UID]string // selector UID → bootstrap plan checksum
}

// runFloor runs the floor controller on ns until ctx ends, with the same
// client limits and worker count as the operator.
func runFloor(ctx context.Context, cfg *rest.Config, ns string, workers int) error {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 500, 1000
	scf, err := controller.NewSharedControllerFactoryFromConfigWithOptions(cfg, schemes.All, &controller.SharedControllerFactoryOptions{
		CacheOptions: &cache.SharedCacheFactoryOptions{
			DefaultNamespace: ns,
			KindTweakList: map[schema.GroupVersionKind]cache.TweakListOptionsFunc{
				corev1.SchemeGroupVersion.WithKind("Secret"): func(o *metav1.ListOptions) { o.LabelSelector = elementalv1.ManagedLabel + "=true" },
			},
		},
		DefaultRateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, 30*time.Second),
		DefaultWorkers:     workers,
	})
	if err != nil {
		return err
	}
	opts := &generic.FactoryOptions{SharedControllerFactory: scf}
	el, err := elementalfactory.NewFactoryFromConfigWithOptions(cfg, opts)
	if err != nil {
		return err
	}
	core, err := corefactory.NewFactoryFromConfigWithOptions(cfg, opts)
	if err != nil {
		return err
	}
	capi, err := capifactory.NewFactoryFromConfigWithOptions(cfg, opts)
	if err != nil {
		return err
	}
	k8s, err := kubernetes.NewForConfig(controllers.ProtobufConfig(cfg))
	if err != nil {
		return err
	}
	secrets := core.Core().V1().Secret()
	f := &floor{
		inventories: el.Elemental().V1beta1().MachineInventory(),
		selectors:   el.Elemental().V1beta1().MachineInventorySelector(),
		machines:    capi.Cluster().V1beta2().Machine().Cache(),
		secrets:     secrets.Cache(),
		k8s:         k8s,
		taken:       map[string]bool{},
		claims:      map[types.UID]string{},
		owners:      map[string]string{},
		planned:     map[types.UID]string{},
	}
	f.inventories.OnChange(ctx, "floor-inventory", f.onInventory)
	f.selectors.OnChange(ctx, "floor-selector", f.onSelector)
	secrets.OnChange(ctx, "floor-secret", f.onSecret)
	for _, s := range []interface {
		Start(context.Context, int) error
	}{el, core, capi} {
		if err := s.Start(ctx, workers); err != nil {
			return err
		}
	}
	return nil
}

func (f *floor) onInventory(_ string, mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
	if mi == nil || mi.DeletionTimestamp != nil {
		return mi, nil
	}
	secret, err := f.secrets.Get(mi.Namespace, mi.Name)
	if apierrors.IsNotFound(err) {
		_, err = f.k8s.CoreV1().Secrets(mi.Namespace).Create(context.Background(), plans.NewSecret(mi), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
		return mi, err
	}
	if err != nil {
		return mi, err
	}
	if mi.Status.Phase == "" {
		sum := plans.Checksum(secret.Data[plans.KeyPlan])
		if string(secret.Data["applied-checksum"]) != sum {
			return mi, nil // the Secret's event brings us back
		}
		updated := mi.DeepCopy()
		updated.Status.Phase = "Available"
		updated.Status.Plan = &elementalv1.PlanStatus{Checksum: sum, Type: elementalv1.PlanTypeEmpty, State: elementalv1.PlanApplied}
		updated.Status.Conditions = []metav1.Condition{{Type: elementalv1.ConditionReady, Status: metav1.ConditionTrue,
			Reason: elementalv1.ReasonPlanSuccessfullyApplied, LastTransitionTime: metav1.Now()}}
		return f.inventories.UpdateStatus(updated)
	}
	if mi.Status.Phase == "Available" && !inventory.Claimed(mi) {
		f.addFree(mi.Name)
	}
	return mi, nil
}

func (f *floor) addFree(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.taken[name] {
		return
	}
	f.taken[name] = true // in the stack: not added twice
	f.free = append(f.free, name)
	if n := len(f.waiters); n > 0 {
		ns, sel := splitNS(f.waiters[n-1])
		f.waiters = f.waiters[:n-1]
		f.selectors.Enqueue(ns, sel)
	}
}

func (f *floor) take(mis *elementalv1.MachineInventorySelector) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name, ok := f.claims[mis.UID]; ok {
		return name, true
	}
	if len(f.free) == 0 {
		f.waiters = append(f.waiters, mis.Namespace+"/"+mis.Name)
		return "", false
	}
	name := f.free[len(f.free)-1]
	f.free = f.free[:len(f.free)-1]
	f.claims[mis.UID] = name
	f.owners[name] = mis.Name
	return name, true
}

func (f *floor) onSelector(_ string, mis *elementalv1.MachineInventorySelector) (*elementalv1.MachineInventorySelector, error) {
	if mis == nil || mis.DeletionTimestamp != nil || mis.Status.Ready || len(mis.OwnerReferences) == 0 {
		return mis, nil
	}
	name, ok := f.take(mis)
	if !ok {
		return mis, nil // addFree wakes us
	}
	mi, err := f.inventories.Cache().Get(mis.Namespace, name)
	if err != nil {
		return mis, err
	}
	if !inventory.Claimed(mi) {
		if mi, err = f.inventories.Update(inventory.ClaimBy(mi, mis)); err != nil {
			return mis, err
		}
	}
	f.mu.Lock()
	sum := f.planned[mis.UID]
	f.mu.Unlock()
	if sum == "" {
		machine, err := f.machines.Get(mis.Namespace, mis.OwnerReferences[0].Name)
		if err != nil {
			return mis, err
		}
		if machine.Spec.Bootstrap.DataSecretName == nil {
			return mis, fmt.Errorf("machine %s has no bootstrap data", machine.Name)
		}
		boot, err := f.k8s.CoreV1().Secrets(mis.Namespace).Get(context.Background(), *machine.Spec.Bootstrap.DataSecretName, metav1.GetOptions{})
		if err != nil {
			return mis, err
		}
		plan, _, err := plans.Bootstrap(mi.Name, boot.Data["value"], mi.Labels)
		if err != nil {
			return mis, err
		}
		if _, err := f.k8s.CoreV1().Secrets(mis.Namespace).Patch(context.Background(), mi.Name, types.MergePatchType,
			plans.Patch(plan, elementalv1.PlanTypeBootstrap), metav1.PatchOptions{}); err != nil {
			return mis, err
		}
		sum = plans.Checksum(plan)
		f.mu.Lock()
		f.planned[mis.UID] = sum
		f.mu.Unlock()
		return mis, nil // the agent's write-back brings us back
	}
	secret, err := f.secrets.Get(mis.Namespace, mi.Name)
	if err != nil || string(secret.Data["applied-checksum"]) != sum {
		return mis, nil
	}
	updated := mis.DeepCopy()
	updated.Status.Ready = true
	updated.Status.Initialization = &elementalv1.Initialization{Provisioned: true}
	updated.Status.MachineInventoryRef = &corev1.LocalObjectReference{Name: mi.Name}
	updated.Status.BootstrapPlanChecksum = sum
	updated.Status.Conditions = []metav1.Condition{{Type: elementalv1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: elementalv1.ReasonSelectorReady, LastTransitionTime: metav1.Now()}}
	return f.selectors.UpdateStatus(updated)
}

// onSecret wakes the inventory (phase 1) or its selector (phase 2).
func (f *floor) onSecret(_ string, s *corev1.Secret) (*corev1.Secret, error) {
	if s == nil || s.Type != elementalv1.PlanSecretType {
		return s, nil
	}
	f.mu.Lock()
	sel, ok := f.owners[s.Name]
	f.mu.Unlock()
	if ok {
		f.selectors.Enqueue(s.Namespace, sel)
	} else {
		f.inventories.Enqueue(s.Namespace, s.Name)
	}
	return s, nil
}

func splitNS(key string) (string, string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}
