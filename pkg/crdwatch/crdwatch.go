// Package crdwatch tells when optional kinds (Cluster API's Machine and
// Cluster, Rancher's Setting) become served, so what depends on them starts
// without a restart when their CRDs are installed after the operator.
package crdwatch

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apiextinformers "k8s.io/apiextensions-apiserver/pkg/client/informers/externalversions"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Kind is one resource of a group version; its CRD is <Resource>.<Group>.
type Kind struct {
	Group, Version, Resource string
}

// The kinds of other projects that some handlers need. Their CRDs may be
// installed after the operator (Rancher or Cluster API added to a running
// cluster): what needs them then starts without a restart.
var (
	ClusterAPI = []Kind{
		{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "machines"},
		{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "clusters"},
	}
	RancherSettings = []Kind{{Group: "management.cattle.io", Version: "v3", Resource: "settings"}}
)

// CRDName is the name of the CustomResourceDefinition that serves k.
func (k Kind) CRDName() string { return k.Resource + "." + k.Group }

func (k Kind) String() string { return k.Group + "/" + k.Version + " " + k.Resource }

// Served reports whether discovery lists every kind: then their caches sync.
func Served(d discovery.DiscoveryInterface, kinds ...Kind) (bool, error) {
	for _, k := range kinds {
		list, err := d.ServerResourcesForGroupVersion(k.Group + "/" + k.Version)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		found := false
		for _, r := range list.APIResources {
			found = found || r.Name == k.Resource
		}
		if !found {
			return false, nil
		}
	}
	return true, nil
}

// Established is the pure rule: the CRD is Established and serves version.
func Established(crd *apiextv1.CustomResourceDefinition, version string) bool {
	if crd == nil || crd.DeletionTimestamp != nil {
		return false
	}
	established := false
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextv1.Established {
			established = c.Status == apiextv1.ConditionTrue
		}
	}
	if !established {
		return false
	}
	for _, v := range crd.Spec.Versions {
		if v.Name == version && v.Served {
			return true
		}
	}
	return false
}

// discoveryWait bounds how long discovery may lag behind an Established CRD.
const discoveryWait = time.Minute

// WhenServed calls fn once, in its own goroutine, as soon as every kind is
// served, then stops watching. It watches only the named CRDs (one informer
// each, field-selected to its name: no other CRD is ever cached, and RBAC
// can grant list/watch by resourceNames). Discovery is checked last: the
// API server publishes a new CRD there shortly after Established, and caches
// built from it need it. Call it only for kinds that are not served yet.
func WhenServed(ctx context.Context, cfg *rest.Config, kinds []Kind, fn func(context.Context)) error {
	client, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	watchCtx, stop := context.WithCancel(ctx)
	w := &watcher{kinds: kinds, disco: disco, fn: fn, stop: stop, ctx: ctx, wake: make(chan struct{}, 1)}
	for _, k := range kinds {
		factory := apiextinformers.NewSharedInformerFactoryWithOptions(client, 0,
			apiextinformers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.CRDName()).String()
			}))
		inf := factory.Apiextensions().V1().CustomResourceDefinitions().Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { w.poke() },
			UpdateFunc: func(_, _ any) { w.poke() },
		}); err != nil {
			stop()
			return err
		}
		w.stores = append(w.stores, inf.GetStore())
		factory.Start(watchCtx.Done())
	}
	go w.run(watchCtx)
	return nil
}

type watcher struct {
	ctx    context.Context
	kinds  []Kind
	stores []cache.Store
	disco  discovery.DiscoveryInterface
	fn     func(context.Context)
	stop   context.CancelFunc
	wake   chan struct{}
	once   sync.Once
}

func (w *watcher) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) established() bool {
	for i, k := range w.kinds {
		obj, ok, _ := w.stores[i].GetByKey(k.CRDName())
		crd, _ := obj.(*apiextv1.CustomResourceDefinition)
		if !ok || !Established(crd, k.Version) {
			return false
		}
	}
	return true
}

func (w *watcher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		if !w.established() {
			continue
		}
		if err := w.waitDiscovery(ctx); err != nil {
			logrus.WithError(err).WithField("kinds", fmt.Sprint(w.kinds)).Warn("CRDs are established but not served yet; waiting for their next change")
			continue
		}
		w.stop()
		w.once.Do(func() { go w.fn(w.ctx) })
		return
	}
}

func (w *watcher) waitDiscovery(ctx context.Context) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, discoveryWait, true, func(context.Context) (bool, error) {
		served, err := Served(w.disco, w.kinds...)
		if err != nil {
			// Retried until the timeout: discovery errors are transient here.
			logrus.WithError(err).Debug("discovery")
			return false, nil
		}
		return served, nil
	})
}
