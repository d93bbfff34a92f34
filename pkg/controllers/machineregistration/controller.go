// Package machineregistration keeps every MachineRegistration's token,
// registration URL and Ready condition current (docs/contracts.md, Our CRDs). It runs on the
// leader only and is the only writer of MachineRegistration status.
package machineregistration

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/record"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	"github.com/elemental-operator/elemental-operator/pkg/endpoints"
	elementalctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/elemental.cattle.io/v1beta1"
	mgmtv3ctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io/v3"
	"github.com/elemental-operator/elemental-operator/pkg/register/settings"
)

// TokenIndex indexes registrations by spec.token and status.registrationToken,
// so uniqueness is checked without listing every registration.
const TokenIndex = "elemental.cattle.io/machineregistration-token"

// Options are the command-line knobs the controller needs.
type Options struct {
	// Endpoints is the resolved registration mode and the command-line URLs.
	Endpoints endpoints.Static
}

type handler struct {
	registrations elementalctl.MachineRegistrationController
	cache         elementalctl.MachineRegistrationCache
	settings      atomic.Pointer[settings.Reader] // once the Setting kind is served; until then server-url reads empty
	recorder      record.EventRecorder
	opts          Options
}

// TokenIndexer is shared with the registration server's own cache.
func TokenIndexer(mr *elementalv1.MachineRegistration) ([]string, error) {
	var keys []string
	if mr.Spec.Token != "" {
		keys = append(keys, mr.Spec.Token)
	}
	if t := mr.Status.RegistrationToken; t != "" && t != mr.Spec.Token {
		keys = append(keys, t)
	}
	return keys, nil
}

// Register wires the handlers. Settings are watched only when the Setting
// kind is served (a cache for a missing CRD would never sync); when it is
// not, Register returns watchSettings, to call once it is.
func Register(ctx context.Context, registrations elementalctl.MachineRegistrationController,
	settingsCtl mgmtv3ctl.SettingController, disco discovery.DiscoveryInterface, recorder record.EventRecorder,
	opts Options) (watchSettings func(context.Context), err error) {
	h := &handler{
		registrations: registrations,
		cache:         registrations.Cache(),
		recorder:      recorder,
		opts:          opts,
	}
	h.cache.AddIndexer(TokenIndex, TokenIndexer)

	served, err := settings.Served(disco)
	if err != nil {
		return nil, fmt.Errorf("discovering Rancher settings: %w", err)
	}
	watch := func(ctx context.Context) {
		h.settings.Store(&settings.Reader{Cache: settingsCtl.Cache()})
		settingsCtl.OnChange(ctx, "setting-to-machineregistration", h.onSetting)
	}
	registrations.OnChange(ctx, "machineregistration", h.OnChange)
	if served {
		watch(ctx)
		return nil, nil
	}
	logrus.Info("Rancher Settings are not served: server-url counts as empty")
	return func(ctx context.Context) {
		watch(ctx)
		// Every registration URL may have a base now.
		h.enqueueAll(func(*elementalv1.MachineRegistration) bool { return true })
	}, nil
}

func (h *handler) settingsReader() settings.Reader {
	if r := h.settings.Load(); r != nil {
		return *r
	}
	return settings.Reader{}
}

// onSetting re-queues every registration when the base URL may have moved:
// each one's registrationURL embeds it.
func (h *handler) onSetting(_ string, s *mgmtv3.Setting) (*mgmtv3.Setting, error) {
	if s == nil || s.Name != settings.ServerURL {
		return s, nil
	}
	h.enqueueAll(func(*elementalv1.MachineRegistration) bool { return true })
	return s, nil
}

func (h *handler) enqueueAll(match func(*elementalv1.MachineRegistration) bool) {
	h.enqueueAllAfter(match, 0)
}

func (h *handler) enqueueAllAfter(match func(*elementalv1.MachineRegistration) bool, delay time.Duration) {
	all, err := h.cache.List("", labels.Everything())
	if err != nil {
		logrus.WithError(err).Warn("listing machineregistrations")
		return
	}
	for _, mr := range all {
		if match(mr) {
			h.registrations.EnqueueAfter(mr.Namespace, mr.Name, delay) // not Enqueue: lasso rate-limits that per key
		}
	}
}
