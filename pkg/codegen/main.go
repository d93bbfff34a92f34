// Command codegen runs wrangler's controller-gen: deepcopy, list types and
// registration for our API packages, and typed generic controllers for them and
// for the external kinds we watch. Run through `go generate ./...`.
package main

import (
	"os"

	controllergen "github.com/rancher/wrangler/v3/pkg/controller-gen"
	"github.com/rancher/wrangler/v3/pkg/controller-gen/args"
	capiv1beta2 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

func main() {
	// Boilerplate and types are given relative to the module root.
	_ = os.Unsetenv("GOPATH")
	controllergen.Run(args.Options{
		OutputPackage: "github.com/elemental-operator/elemental-operator/pkg/generated",
		Boilerplate:   "hack/boilerplate.go.txt",
		Groups: map[string]args.Group{
			"elemental.cattle.io": {
				Types:         []interface{}{"./pkg/apis/elemental.cattle.io/v1beta1"},
				GenerateTypes: true,
			},
			"management.cattle.io": {
				Types:         []interface{}{"./pkg/apis/management.cattle.io/v3"},
				GenerateTypes: true,
			},
			"cluster.x-k8s.io": {
				Types: []interface{}{capiv1beta2.Machine{}, capiv1beta2.Cluster{}},
			},
		},
	})
}
