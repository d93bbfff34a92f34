package main

// Code generation, one entry point: `go generate ./...` (or `make generate`).
// controller-gen runs at a pinned version in its own module graph.
//go:generate go run ./pkg/codegen/cleanup
//go:generate go run ./pkg/codegen
//go:generate go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0 crd:crdVersions=v1 paths=./pkg/apis/elemental.cattle.io/... output:crd:dir=./pkg/crds/yaml
//go:generate go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0 crd:crdVersions=v1 paths=./pkg/apis/management.cattle.io/... output:crd:dir=./pkg/testenv/crds
//go:generate bash hack/crd-chart.sh
//go:generate bash hack/policy-chart.sh
