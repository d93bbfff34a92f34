package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The identity-hash label names an inventory's host in label selectors
// (the post-create uniqueness check). A plain hash of a MAC is reversed by
// trying every MAC of a vendor, so the label is a keyed hash (HMAC-SHA256)
// under a key generated once per installation and shared by every replica
// through a Secret in the operator's namespace.

// IdentityKeySecret is the Secret holding the per-installation key.
const IdentityKeySecret = "elemental-identity-key"

// identityKeyField is the key's field in the Secret; identityKeySize its
// length in bytes (the strength of SHA-256).
const (
	identityKeyField = "key"
	identityKeySize  = 32
)

// loadIdentityKey reads the installation's key, creating it if missing.
// Replicas starting together race to create it: the loser reads the
// winner's, so every replica labels alike.
func loadIdentityKey(ctx context.Context, k8s kubernetes.Interface, namespace string) ([]byte, error) {
	if namespace == "" {
		return nil, fmt.Errorf("no namespace for the identity key Secret")
	}
	secrets := k8s.CoreV1().Secrets(namespace)
	s, err := secrets.Get(ctx, IdentityKeySecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		key := make([]byte, identityKeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		s, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: IdentityKeySecret, Namespace: namespace},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{identityKeyField: key},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			s, err = secrets.Get(ctx, IdentityKeySecret, metav1.GetOptions{})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("identity key Secret %s/%s: %w", namespace, IdentityKeySecret, err)
	}
	key := s.Data[identityKeyField]
	if len(key) < identityKeySize {
		return nil, fmt.Errorf("identity key Secret %s/%s: %q must hold at least %d bytes", namespace, IdentityKeySecret, identityKeyField, identityKeySize)
	}
	return key, nil
}

// identityLabel is the keyed identity-hash label value: the first 32 hex
// characters of HMAC-SHA256(key, indexKey), the TPM and PLAIN spaces kept
// apart as in the index.
func identityLabel(key []byte, id identity) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id.indexKey()))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// legacyIdentityLabel is the unkeyed value older versions wrote (the first
// 32 hex characters of the spec hash): still matched, never written.
func legacyIdentityLabel(id identity) string { return id.hash[:32] }
