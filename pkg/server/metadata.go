package server

import (
	"errors"
	"fmt"
	"strings"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/templates"
)

// hostInput is what a conversation collected.
type hostInput struct {
	data        map[string]interface{}
	labels      map[string]string
	annotations map[string]string
}

// warning is a skipped label or annotation, reported as an Event on the MR.
type warning struct{ reason, message string }

// labelPrefix is the effective prefix for client label keys: the
// elemental.cattle.io/ default when spec.labelPrefix is empty, none for "-",
// else spec.labelPrefix with one trailing slash.
func labelPrefix(mr *elementalv1.MachineRegistration) string {
	switch p := mr.Spec.LabelPrefix; p {
	case "":
		return elementalv1.Prefix
	case "-":
		return ""
	default:
		return strings.TrimSuffix(p, "/") + "/"
	}
}

// buildMetadata computes the labels and annotations a registration sets on
// the inventory. existing (nil for a new host) provides the values Random
// templates keep. Nothing here removes keys.
func buildMetadata(mr *elementalv1.MachineRegistration, in hostInput, existing *elementalv1.MachineInventory) (map[string]string, map[string]string, []warning) {
	labels, annotations := map[string]string{}, map[string]string{}
	var warns []warning
	prefix := labelPrefix(mr)
	clientKey := func(k string) (string, bool) {
		key := prefix + k
		if !templates.ValidLabelKey(key) || elementalv1.ReservedKeys[key] {
			warns = append(warns, warning{"InvalidLabel", fmt.Sprintf("skipped client key %q: invalid or reserved", key)})
			return "", false
		}
		return key, true
	}
	for k, v := range in.annotations {
		if key, ok := clientKey(k); ok {
			annotations[key] = templates.AnnotationValue(v)
		}
		if k == "os.unmanaged" && v == "true" {
			annotations[elementalv1.OSUnmanagedAnnotation] = "true"
		}
	}
	for k, v := range in.labels {
		key, ok := clientKey(k)
		if !ok {
			continue
		}
		if val, err := templates.Render(v, in.data); err == nil {
			labels[key] = templates.LabelValue(val)
		}
	}
	var prev map[string]string
	var prevAnn map[string]string
	if existing != nil {
		prev, prevAnn = existing.Labels, existing.Annotations
	}
	render := func(kind string, tmpls map[string]string, dst, previous map[string]string, sanitize func(string) string) {
		for k, tmpl := range tmpls {
			if !templates.ValidLabelKey(k) {
				warns = append(warns, warning{"InvalidLabelTemplate", fmt.Sprintf("%s key %q is not valid", kind, k)})
				continue
			}
			if elementalv1.GateKeys[k] {
				// Hosts influence what templates render: never let a
				// registration approve or uncordon a host.
				warns = append(warns, warning{"InvalidLabelTemplate", fmt.Sprintf("%s key %q is reserved for admins", kind, k)})
				continue
			}
			// Render-once: random values stay stable across re-registrations.
			if templates.HasRandom(tmpl) && previous[k] != "" {
				dst[k] = previous[k]
				continue
			}
			val, err := templates.Render(tmpl, in.data)
			switch {
			case errors.Is(err, templates.ErrNotFound):
				continue
			case err != nil:
				warns = append(warns, warning{"InvalidLabelTemplate", fmt.Sprintf("%s %q: %v", kind, k, err)})
				continue
			}
			dst[k] = sanitize(val)
		}
	}
	for k, v := range hardwareLabels(in.data) {
		labels[k] = v // over client labels; the admin's templates below still win
	}
	render("label", mr.Spec.MachineInventoryLabels, labels, prev, templates.LabelValue)
	render("annotation", mr.Spec.MachineInventoryAnnotations, annotations, prevAnn, templates.AnnotationValue)
	return labels, annotations, warns
}

// newInventoryMetadata adds the annotations only a first registration writes.
func newInventoryMetadata(mr *elementalv1.MachineRegistration, annotations map[string]string) {
	if mr.Spec.Config.Elemental.Reset.Enabled {
		annotations[elementalv1.ResettableAnnotation] = "true"
	}
	annotations[elementalv1.MachineRegistrationAnnotation] = mr.Name
	policy := string(mr.Spec.ReleasePolicy)
	if policy == "" {
		policy = string(elementalv1.ReleasePolicyRelease)
	}
	annotations[elementalv1.ReleasePolicyAnnotation] = policy
}

// changed keeps the entries of want that differ from have: the merge patch
// then only adds or changes keys.
func changed(want, have map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range want {
		if cur, ok := have[k]; !ok || cur != v {
			out[k] = v
		}
	}
	return out
}

// renderName renders spec.machineName for a new inventory (see
// docs/contracts.md, elemental-register: Templates).
func renderName(mr *elementalv1.MachineRegistration, data map[string]interface{}, random func() string) (string, *warning, error) {
	tmpl := mr.Spec.MachineName
	if tmpl == "" {
		return "m-" + random(), nil, nil
	}
	raw, err := templates.Render(tmpl, data)
	if errors.Is(err, templates.ErrNotFound) {
		return "m-" + random(), &warning{"InvalidLabelTemplate", fmt.Sprintf("spec.machineName: %v; using a random name", err)}, nil
	}
	if err != nil {
		return "", nil, err
	}
	name, err := templates.Name(raw)
	return name, nil, err
}
