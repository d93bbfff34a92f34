// Package settings reads the Rancher Settings onboarding depends on
// (docs/contracts.md, Rancher: Settings): effective value = value, else default; a missing
// Setting CRD (no Rancher) means every Setting is empty.
package settings

import (
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"

	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
)

// The Settings we read.
const (
	ServerURL    = "server-url"
	CACerts      = "cacerts"
	AgentTLSMode = "agent-tls-mode"
)

// Getter is what a Setting cache offers (nil-safe use through Reader).
type Getter interface {
	Get(name string) (*mgmtv3.Setting, error)
}

// Served reports whether management.cattle.io/v3 settings exist. Caches for an
// unserved kind never sync, so callers must not touch them when it is false.
func Served(d discovery.DiscoveryInterface) (bool, error) {
	return ResourceServed(d, mgmtv3.SchemeGroupVersion.String(), "settings")
}

// APIServiceServed reports whether Rancher's APIService kind exists: then
// Rancher can tunnel /elemental/* to us.
func APIServiceServed(d discovery.DiscoveryInterface) (bool, error) {
	return ResourceServed(d, mgmtv3.SchemeGroupVersion.String(), "apiservices")
}

// ResourceServed reports whether groupVersion serves resource.
func ResourceServed(d discovery.DiscoveryInterface, groupVersion, resource string) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion(groupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true, nil
		}
	}
	return false, nil
}

// Reader reads effective Setting values; a nil Getter reads everything as empty.
type Reader struct{ Cache Getter }

// Value is the effective value of a Setting, "" when missing.
func (r Reader) Value(name string) string {
	if r.Cache == nil {
		return ""
	}
	s, err := r.Cache.Get(name)
	if err != nil {
		return ""
	}
	return s.Effective()
}
