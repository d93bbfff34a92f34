// Package admission embeds the ValidatingAdmissionPolicy that keeps plan
// Secrets programmable by the operator only (agents may write back their
// keys and nothing else), and installs it next to the CRDs at start-up.
package admission

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/yaml"
)

// PolicyYAML is the policy and its binding; the chart's template is generated
// from it (hack/policy-chart.sh).
//
//go:embed policy.yaml
var PolicyYAML []byte

// WriteBackKeys are the data keys rancher-system-agent v0.3.4 writes into its
// plan Secret (pkg/k8splan/watcher.go): the only ones the policy lets it change.
var WriteBackKeys = []string{
	"applied-checksum", "applied-output", "applied-periodic-output",
	"failed-checksum", "failed-output", "failure-count", "success-count",
	"last-apply-time", "probe-statuses",
}

// ErrNotServed means the API server does not serve
// admissionregistration.k8s.io/v1 ValidatingAdmissionPolicies (Kubernetes
// before 1.30, or the API switched off): plan Secrets then rely on RBAC and
// tamper detection alone.
var ErrNotServed = errors.New("admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy is not served")

// Objects decodes the embedded policy and binding.
func Objects() (*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding, error) {
	var policy *admissionv1.ValidatingAdmissionPolicy
	var binding *admissionv1.ValidatingAdmissionPolicyBinding
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(PolicyYAML)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, nil, err
		}
		switch tm.Kind {
		case "":
			continue // comments only
		case "ValidatingAdmissionPolicy":
			policy = &admissionv1.ValidatingAdmissionPolicy{}
			err = yaml.UnmarshalStrict(doc, policy)
		case "ValidatingAdmissionPolicyBinding":
			binding = &admissionv1.ValidatingAdmissionPolicyBinding{}
			err = yaml.UnmarshalStrict(doc, binding)
		default:
			err = fmt.Errorf("unexpected kind %q", tm.Kind)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("policy.yaml: %w", err)
		}
	}
	if policy == nil || binding == nil {
		return nil, nil, errors.New("policy.yaml must hold one policy and one binding")
	}
	return policy, binding, nil
}

// Served reports whether the API server serves ValidatingAdmissionPolicies
// in admissionregistration.k8s.io/v1.
func Served(k8s kubernetes.Interface) (bool, error) {
	resources, err := k8s.Discovery().ServerResourcesForGroupVersion(admissionv1.SchemeGroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range resources.APIResources {
		if r.Name == "validatingadmissionpolicies" {
			return true, nil
		}
	}
	return false, nil
}

// Install creates the policy and its binding, or updates them in place
// (labels and annotations merged, spec replaced) when they differ. It returns
// ErrNotServed, and changes nothing, on a cluster without the API.
func Install(ctx context.Context, k8s kubernetes.Interface) error {
	served, err := Served(k8s)
	if err != nil {
		return fmt.Errorf("discovering %s: %w", admissionv1.SchemeGroupVersion, err)
	}
	if !served {
		return ErrNotServed
	}
	policy, binding, err := Objects()
	if err != nil {
		return err
	}
	err = apply(ctx, "ValidatingAdmissionPolicy", k8s.AdmissionregistrationV1().ValidatingAdmissionPolicies(), policy,
		func(dst, src *admissionv1.ValidatingAdmissionPolicy) { dst.Spec = src.Spec })
	if err != nil {
		return err
	}
	return apply(ctx, "ValidatingAdmissionPolicyBinding", k8s.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings(), binding,
		func(dst, src *admissionv1.ValidatingAdmissionPolicyBinding) { dst.Spec = src.Spec })
}

// object is what apply needs of a typed API object.
type object[T any] interface {
	metav1.Object
	DeepCopy() T
}

// typedClient is the part of a client-go typed client apply uses.
type typedClient[T any] interface {
	Create(context.Context, T, metav1.CreateOptions) (T, error)
	Get(context.Context, string, metav1.GetOptions) (T, error)
	Update(context.Context, T, metav1.UpdateOptions) (T, error)
}

// apply creates want or, when it exists, brings its labels, annotations and
// spec (setSpec) in line, writing only on a difference.
func apply[T object[T]](ctx context.Context, kind string, c typedClient[T], want T, setSpec func(dst, src T)) error {
	name := want.GetName()
	return createOrUpdate(kind, name,
		func() error { _, err := c.Create(ctx, want.DeepCopy(), metav1.CreateOptions{}); return err },
		func() error {
			existing, err := c.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			update := existing.DeepCopy()
			update.SetLabels(labels.Merge(update.GetLabels(), want.GetLabels()))
			update.SetAnnotations(labels.Merge(update.GetAnnotations(), want.GetAnnotations()))
			setSpec(update, want)
			if apiequality.Semantic.DeepEqual(existing, update) {
				return nil
			}
			_, err = c.Update(ctx, update, metav1.UpdateOptions{})
			return err
		})
}

// createOrUpdate creates an object and, when it exists, brings it in line.
func createOrUpdate(kind, name string, create, update func() error) error {
	err := create()
	if err == nil {
		logrus.WithFields(logrus.Fields{"kind": kind, "name": name}).Info("installed admission policy object")
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s %s: %w", kind, name, err)
	}
	if err := retry.RetryOnConflict(retry.DefaultRetry, update); err != nil {
		return fmt.Errorf("updating %s %s: %w", kind, name, err)
	}
	return nil
}
