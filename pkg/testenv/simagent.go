package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// SimulatedAgents answer every inventory plan Secret of a namespace the way
// rancher-system-agent's checksum protocol does (docs/contracts.md, Plan Secret), without
// running anything: for tests and benchmarks at a scale where real agents
// would not fit. A plan containing FailMarker is reported as failed.
type SimulatedAgents struct {
	client kubernetes.Interface
	queue  workqueue.TypedRateLimitingInterface[string]
	lister cache.Indexer
	ns     string
	// answered counts the plans answered (applied or failed).
	answered atomic.Int64
}

// Answered is how many plans the agents have answered so far.
func (a *SimulatedAgents) Answered() int64 { return a.answered.Load() }

// Plans counts the plan Secrets the agents see with this plan.type.
func (a *SimulatedAgents) Plans(planType string) int {
	n := 0
	for _, obj := range a.lister.List() {
		if s, ok := obj.(*corev1.Secret); ok && s.Annotations["elemental.cattle.io/plan.type"] == planType {
			n++
		}
	}
	return n
}

// FailMarker in a plan's bytes makes the simulated agent fail it.
const FailMarker = "simulated-failure"

// RunSimulatedAgents starts answering plan Secrets in namespace until ctx ends.
func RunSimulatedAgents(ctx context.Context, client kubernetes.Interface, namespace string, workers int) *SimulatedAgents {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", "elemental.cattle.io/plan").String()
		}))
	informer := factory.Core().V1().Secrets().Informer()
	a := &SimulatedAgents{
		client: client,
		queue:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		lister: informer.GetIndexer(),
		ns:     namespace,
	}
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { a.enqueue(obj) },
		UpdateFunc: func(_, obj interface{}) { a.enqueue(obj) },
	})
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	go func() { <-ctx.Done(); a.queue.ShutDown() }()
	for i := 0; i < workers; i++ {
		go func() {
			for {
				key, quit := a.queue.Get()
				if quit {
					return
				}
				if err := a.answer(ctx, key); err != nil {
					a.queue.AddRateLimited(key)
				} else {
					a.queue.Forget(key)
				}
				a.queue.Done(key)
			}
		}()
	}
	return a
}

func (a *SimulatedAgents) enqueue(obj interface{}) {
	if s, ok := obj.(*corev1.Secret); ok {
		a.queue.Add(s.Name)
	}
}

func (a *SimulatedAgents) answer(ctx context.Context, name string) error {
	obj, exists, err := a.lister.GetByKey(a.ns + "/" + name)
	if err != nil || !exists {
		return err
	}
	s := obj.(*corev1.Secret)
	plan, ok := s.Data["plan"]
	if !ok {
		return nil
	}
	sum := sha256.Sum256(plan)
	checksum := hex.EncodeToString(sum[:])
	if string(s.Data["applied-checksum"]) == checksum || string(s.Data["failed-checksum"]) == checksum {
		return nil // already answered this plan
	}
	now := []byte(time.Now().UTC().Format(time.UnixDate))
	data := map[string][]byte{"last-apply-time": now}
	if planMentions(plan, FailMarker) {
		count, _ := strconv.Atoi(string(s.Data["failure-count"]))
		data["failed-checksum"] = []byte(checksum)
		data["failure-count"] = []byte(strconv.Itoa(count + 1))
		data["success-count"] = []byte("0")
	} else {
		data["applied-checksum"] = []byte(checksum)
		data["failed-checksum"] = []byte("")
		data["failure-count"] = []byte("0")
		count, _ := strconv.Atoi(string(s.Data["success-count"]))
		data["success-count"] = []byte(strconv.Itoa(count + 1))
	}
	patch, _ := json.Marshal(map[string]interface{}{"data": data})
	if _, err = a.client.CoreV1().Secrets(a.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return err
	}
	a.answered.Add(1)
	return nil
}

// planMentions looks for marker in the plan, its decoded file contents and
// its instructions (a bootstrap script is base64 inside the plan).
func planMentions(plan []byte, marker string) bool {
	if strings.Contains(string(plan), marker) {
		return true
	}
	var p struct {
		Files []struct {
			Content string `json:"content"`
		} `json:"files"`
	}
	if err := json.Unmarshal(plan, &p); err != nil {
		return false
	}
	for _, f := range p.Files {
		if b, err := base64.StdEncoding.DecodeString(f.Content); err == nil && strings.Contains(string(b), marker) {
			return true
		}
	}
	return false
}
