package server

import (
	"context"
	"time"

	"github.com/rancher/lasso/pkg/client"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// commitTimeout bounds the API calls of one commit.
const commitTimeout = 5 * time.Second

// replyMargin is kept between the end of the API calls and the
// conversation's deadline: the real client gives up about 1 s before it
// (DefaultConversationTimeout), and the error reply must reach it first.
const replyMargin = 2 * time.Second

// apiDeadline is when the API calls of a commit starting at now must end:
// commitTimeout at most, and replyMargin before the conversation's deadline
// (none when zero), so a slow API server costs the host an error it can
// read, never a silent timeout, and the slot is freed before the host retries.
func apiDeadline(now, conversation time.Time) time.Time {
	d := now.Add(commitTimeout)
	if conversation.IsZero() {
		return d
	}
	if c := conversation.Add(-replyMargin); c.Before(d) {
		return c
	}
	return d
}

// inventoryClient is the MachineInventory client of the registration path,
// with contexts: wrangler's generated clients call the API with
// context.TODO(), which no deadline bounds.
type inventoryClient struct{ c *client.Client }

func (i inventoryClient) Create(ctx context.Context, mi *elementalv1.MachineInventory) (*elementalv1.MachineInventory, error) {
	out := &elementalv1.MachineInventory{}
	return out, i.c.Create(ctx, mi.Namespace, mi, out, metav1.CreateOptions{})
}

func (i inventoryClient) List(ctx context.Context, namespace string, opts metav1.ListOptions) (*elementalv1.MachineInventoryList, error) {
	out := &elementalv1.MachineInventoryList{}
	return out, i.c.List(ctx, namespace, out, opts)
}

func (i inventoryClient) Patch(ctx context.Context, namespace, name string, pt types.PatchType, data []byte) (*elementalv1.MachineInventory, error) {
	out := &elementalv1.MachineInventory{}
	return out, i.c.Patch(ctx, namespace, name, pt, data, out, metav1.PatchOptions{})
}

func (i inventoryClient) Delete(ctx context.Context, namespace, name string, opts *metav1.DeleteOptions) error {
	return i.c.Delete(ctx, namespace, name, *opts)
}
