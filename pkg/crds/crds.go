// Package crds embeds the generated CustomResourceDefinitions of
// elemental.cattle.io and installs or upgrades them at operator start-up.
package crds

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"path"
	"sort"
	"time"

	"github.com/sirupsen/logrus"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

//go:embed yaml/*.yaml
var files embed.FS

// Objects returns the embedded CRDs, sorted by name.
func Objects() ([]*apiextv1.CustomResourceDefinition, error) {
	entries, err := files.ReadDir("yaml")
	if err != nil {
		return nil, err
	}
	var out []*apiextv1.CustomResourceDefinition
	for _, e := range entries {
		data, err := files.ReadFile(path.Join("yaml", e.Name()))
		if err != nil {
			return nil, err
		}
		crds, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		out = append(out, crds...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Decode reads every CRD document of a multi-document YAML stream.
func Decode(data []byte) ([]*apiextv1.CustomResourceDefinition, error) {
	var out []*apiextv1.CustomResourceDefinition
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		crd := &apiextv1.CustomResourceDefinition{}
		if err := dec.Decode(crd); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return nil, err
		}
		if crd.Name == "" {
			continue // empty document
		}
		out = append(out, crd)
	}
}

// Install creates each CRD, or updates it in place when it exists, then waits
// until all are Established so informers started next find them served.
func Install(ctx context.Context, cfg *rest.Config, crds []*apiextv1.CustomResourceDefinition) error {
	client, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	api := client.ApiextensionsV1().CustomResourceDefinitions()
	for _, desired := range crds {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			existing, err := api.Get(ctx, desired.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				_, err = api.Create(ctx, desired.DeepCopy(), metav1.CreateOptions{})
				if err == nil {
					logrus.WithField("crd", desired.Name).Info("installed CRD")
				}
				return err
			}
			if err != nil {
				return err
			}
			update := existing.DeepCopy()
			update.Labels = labels.Merge(update.Labels, desired.Labels)
			update.Annotations = labels.Merge(update.Annotations, desired.Annotations)
			update.Spec = desired.Spec
			_, err = api.Update(ctx, update, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("installing CRD %s: %w", desired.Name, err)
		}
	}
	for _, desired := range crds {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			crd, err := api.Get(ctx, desired.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for CRD %s to be established: %w", desired.Name, err)
		}
	}
	return nil
}
