package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
)

// wrapBinaries makes a private bin directory whose kube-apiserver and etcd
// exec the cached binaries under `setpriv --pdeathsig KILL`: if the test
// process dies without running Stop (a panic, a go test timeout), the kernel
// kills them instead of leaving them running.
func wrapBinaries(assets string) (string, error) {
	dir, err := os.MkdirTemp("", "elemental-testenv-bin-")
	if err != nil {
		return "", err
	}
	setpriv, err := execLookPath("setpriv")
	for _, name := range []string{"kube-apiserver", "etcd"} {
		target := filepath.Join(assets, name)
		var script string
		if err == nil {
			script = fmt.Sprintf("#!/bin/sh\nexec %s --pdeathsig KILL -- %s \"$@\"\n", setpriv, target)
		} else {
			script = fmt.Sprintf("#!/bin/sh\nexec %s \"$@\"\n", target)
		}
		if werr := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); werr != nil {
			return "", werr
		}
	}
	return dir, nil
}

func execLookPath(name string) (string, error) {
	for _, d := range filepath.SplitList(os.Getenv("PATH") + ":/usr/bin:/bin") {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// reapOrphans kills control-plane processes of an earlier run whose parent
// died (they were re-parented to init): the second line of defence after
// pdeathsig, for platforms or runs where it did not fire.
func reapOrphans(assets string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.HasPrefix(string(cmdline), assets+"/") {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// stat: pid (comm) state ppid ...; comm may contain spaces, so cut at ')'.
		fields := strings.Fields(string(stat)[strings.LastIndexByte(string(stat), ')')+1:])
		if len(fields) > 1 && fields[1] == "1" {
			logrus.WithField("pid", pid).Warn("killing orphaned test control-plane process")
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
