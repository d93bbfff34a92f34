// Command cleanup removes everything codegen writes, so stale files of a
// removed type never survive a `go generate ./...`.
package main

import (
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
)

func main() {
	if err := os.RemoveAll("pkg/generated"); err != nil {
		logrus.Fatal(err)
	}
	for _, pattern := range []string{"pkg/apis/*/zz_generated*.go", "pkg/apis/*/*/zz_generated*.go", "pkg/apis/*/*/doc.go"} {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			logrus.Fatal(err)
		}
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				logrus.Fatal(err)
			}
		}
	}
}
