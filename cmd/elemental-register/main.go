// Command elemental-register registers this host with an Elemental
// operator: plain runs re-register (labels refreshed), `--install
// --no-toolkit` also writes the elemental-system-agent files for an
// unmanaged OS. Supports tpm (hardware or emulated; needs a cgo build) and
// mac and sys-uuid authentication.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/elemental-operator/elemental-operator/pkg/register/host"
)

func main() {
	opts := host.Options{}
	flag.StringVar(&opts.Root, "root", "/", "directory every path is relative to")
	flag.StringVar(&opts.ConfigPath, "config", host.ConfigPath, "registration config file (elemental.registration.*)")
	flag.StringVar(&opts.StatePath, "state", host.StatePath, "registration state file")
	flag.BoolVar(&opts.Install, "install", false, "install mode (with --no-toolkit: write the agent files)")
	flag.BoolVar(&opts.NoToolkit, "no-toolkit", false, "unmanaged OS: no elemental toolkit, write the agent files directly")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reply, err := host.Run(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "elemental-register:", err)
		os.Exit(1)
	}
	sa := reply.Elemental.SystemAgent
	fmt.Printf("registered: plan secret %s/%s\n", sa.SecretNamespace, sa.SecretName)
}
