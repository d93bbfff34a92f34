package testenv_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/elemental-operator/elemental-operator/pkg/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	// remotedialer logs every connection at info level, and every dropped
	// one as a warning.
	logrus.SetLevel(logrus.ErrorLevel)
	var err error
	env, err = testenv.Start(testenv.Options{NoElementalCRDs: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	return m.Run()
}
