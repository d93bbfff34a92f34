package controllers

import (
	"github.com/rancher/lasso/pkg/client"
	"github.com/rancher/lasso/pkg/mapper"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// ProtobufConfig returns a copy of cfg that speaks protobuf. Only clients of
// built-in kinds (Secrets, Events, Leases, RBAC, TokenRequests) may use it:
// the API server serves custom resources as JSON only. Protobuf saves the API
// server most of its encoding and decoding work for the Secrets every
// adoption writes and watches.
func ProtobufConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return cfg
}

// builtinProtobuf is lasso's shared client factory with one rest client per
// wire format: protobuf for the kinds client-go knows (built into the API
// server), JSON for everything else (our CRDs, Cluster API, Rancher). Lasso
// itself has a single content type per factory.
type builtinProtobuf struct {
	client.SharedClientFactory // JSON
	proto                      client.SharedClientFactory
}

func newClientFactory(cfg *rest.Config, scheme *runtime.Scheme) (client.SharedClientFactory, error) {
	m, err := mapper.New(cfg)
	if err != nil {
		return nil, err
	}
	jsonClients, err := client.NewSharedClientFactory(cfg, &client.SharedClientFactoryOptions{Mapper: m, Scheme: scheme})
	if err != nil {
		return nil, err
	}
	protoClients, err := client.NewSharedClientFactory(ProtobufConfig(cfg), &client.SharedClientFactoryOptions{Mapper: m, Scheme: scheme})
	if err != nil {
		return nil, err
	}
	return builtinProtobuf{SharedClientFactory: jsonClients, proto: protoClients}, nil
}

func (f builtinProtobuf) pick(gvk schema.GroupVersionKind) client.SharedClientFactory {
	if clientgoscheme.Scheme.Recognizes(gvk) {
		return f.proto
	}
	return f.SharedClientFactory
}

func (f builtinProtobuf) ForKind(gvk schema.GroupVersionKind) (*client.Client, error) {
	return f.pick(gvk).ForKind(gvk)
}

func (f builtinProtobuf) ForResource(gvr schema.GroupVersionResource, namespaced bool) (*client.Client, error) {
	gvk, err := f.GVKForResource(gvr)
	if err != nil {
		return nil, err
	}
	return f.pick(gvk).ForResourceKind(gvr, gvk.Kind, namespaced), nil
}

func (f builtinProtobuf) ForResourceKind(gvr schema.GroupVersionResource, kind string, namespaced bool) *client.Client {
	return f.pick(gvr.GroupVersion().WithKind(kind)).ForResourceKind(gvr, kind, namespaced)
}
