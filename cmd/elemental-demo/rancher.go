package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	mgmtv3 "github.com/elemental-operator/elemental-operator/pkg/apis/management.cattle.io/v3"
	mgmtctl "github.com/elemental-operator/elemental-operator/pkg/generated/controllers/management.cattle.io"
	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

// apiServiceName is the Rancher APIService the chart creates.
const apiServiceName = "elemental-operator"

// createAPIService does what installing the chart next to Rancher does: the
// operator's namespace, and an APIService claiming /elemental/ whose Secret
// Rancher fills with the tunnel's url, token and CA. It waits for that
// Secret.
func createAPIService(ctx context.Context, env *testenv.Env, rancher *testenv.Rancher, namespace, secret string) error {
	_, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	mf, err := mgmtctl.NewFactoryFromConfig(env.Config)
	if err != nil {
		return err
	}
	step("chart: creating APIService %s (pathPrefixes /elemental/, Secret %s/%s)", apiServiceName, namespace, secret)
	if _, err := mf.Management().V3().APIService().Create(&mgmtv3.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: apiServiceName},
		Spec:       mgmtv3.APIServiceSpec{SecretName: secret, SecretNamespace: namespace, PathPrefixes: []string{"/elemental/"}},
	}); err != nil {
		return err
	}
	var s *corev1.Secret
	if err := poll(ctx, time.Minute, func() (bool, error) {
		s, err = env.Client.CoreV1().Secrets(namespace).Get(ctx, secret, metav1.GetOptions{})
		return err == nil && len(s.Data["token"]) > 0 && string(s.Data["token"]) == rancher.Token(apiServiceName), nil
	}); err != nil {
		return fmt.Errorf("rancher never wrote the APIService's Secret: %w", err)
	}
	step("Rancher wrote url (%s), token and ca.crt into Secret %s/%s", s.Data["url"], namespace, secret)
	return nil
}
