// Command elemental-operator turns registered bare-metal and edge hosts into
// Rancher RKE2/K3s cluster nodes.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/rancher/wrangler/v3/pkg/signals"
	"github.com/sirupsen/logrus"

	"github.com/elemental-operator/elemental-operator/pkg/operator"
	"github.com/elemental-operator/elemental-operator/pkg/version"
)

func main() {
	cfg := operator.DefaultConfig()
	fs := flag.NewFlagSet("elemental-operator", flag.ContinueOnError)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(fs.Output(), "Usage: elemental-operator [flags]\n\nEvery flag can also be set with the environment variable shown in brackets.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	cfg.BindFlags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println(version.Version)
		return
	}
	if err := operator.ApplyEnv(fs); err != nil {
		logrus.Fatal(err)
	}
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	operator.RouteKlogToLogrus()
	if cfg.Debug {
		logrus.SetLevel(logrus.DebugLevel)
	}
	// SIGTERM/SIGINT cancel the context: the lease is released and servers drain.
	ctx := signals.SetupSignalContext()
	if err := operator.Run(ctx, cfg, version.Version); err != nil {
		logrus.Fatal(err)
	}
}
