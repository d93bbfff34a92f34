// Package version is set at build time: -ldflags "-X .../pkg/version.Version=v1.2.3".
package version

// Version of this build; "dev" when built without scripts/build.
var Version = "dev"
