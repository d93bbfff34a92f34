package tunnel

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Start watches the one Secret (its own informer, limited to that name: the
// operator's shared Secret cache only holds Secrets it labels) and keeps a
// tunnel to whatever it points at until ctx ends. It runs on every replica,
// outside leader election, so each replica serves registrations.
func Start(ctx context.Context, k8s kubernetes.Interface, opts Options) (*Client, error) {
	if opts.Namespace == "" || opts.Secret == "" || opts.Handler == nil {
		return nil, fmt.Errorf("tunnel: namespace, secret and handler are required")
	}
	c := newClient(ctx, opts)
	factory := informers.NewSharedInformerFactoryWithOptions(k8s, 0,
		informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", opts.Secret).String()
		}))
	inf := factory.Core().V1().Secrets().Informer()
	secretOf := func(obj any) *corev1.Secret {
		s, _ := obj.(*corev1.Secret)
		return s
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.update(secretOf(obj)) },
		UpdateFunc: func(_, obj any) { c.update(secretOf(obj)) },
		DeleteFunc: func(any) { c.update(nil) },
	}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("tunnel: the Secret %s/%s could not be watched", opts.Namespace, opts.Secret)
	}
	if len(inf.GetStore().List()) == 0 {
		c.update(nil)
	}
	return c, nil
}
