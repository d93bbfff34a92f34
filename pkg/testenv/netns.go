package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

const netnsEnv = "ELEMENTAL_TEST_NETNS"

// ReexecInPrivateNetwork runs the current test binary again in a new network
// namespace that has only loopback, for peers that bind every interface (the
// Cluster API manager's webhook server has no host flag). In the parent it
// returns the child's exit code and true; in the child it brings lo up and
// returns false. It needs root, like the real system-agent: the suite runs
// where that is possible, so it fails rather than skips.
func ReexecInPrivateNetwork() (code int, parent bool) {
	if os.Getenv(netnsEnv) == "1" {
		if err := loopbackUp(); err != nil {
			fmt.Fprintln(os.Stderr, "private network: bringing lo up:", err)
			os.Exit(1)
		}
		return 0, false
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "this package runs in a private network namespace and needs root")
		return 1, true
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if exit, ok := err.(*exec.ExitError); ok {
			return exit.ExitCode(), true
		}
		fmt.Fprintln(os.Stderr, "private network:", err)
		return 1, true
	}
	return 0, true
}

// loopbackUp sets IFF_UP on lo; a new network namespace starts with it down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer func() { _ = unix.Close(fd) }()
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
