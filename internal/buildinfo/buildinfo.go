// Package buildinfo owns how kvlog's binaries describe their build for
// --version: a version set at link time, else what the Go toolchain
// recorded (the module version of a tagged build, or the VCS revision and
// whether the tree was modified), followed by the Go version.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Stamped is the release version the Makefile stamps at link time
// (-ldflags "-X github.com/kvlog/kvlog/internal/buildinfo.Stamped=$(git
// describe)"), for every package of the binary (the broker's build-info
// metric too).
var Stamped string

// Version describes the build. set is the version given at link time
// (-ldflags "-X main.version=…"); "" falls back to Stamped, then to the
// build info.
func Version(set string) string {
	v := set
	if v == "" {
		v = Stamped
	}
	if bi, ok := debug.ReadBuildInfo(); v == "" && ok {
		v = bi.Main.Version
		if v == "" || v == "(devel)" {
			v = "devel"
			var rev, dirty string
			for _, st := range bi.Settings {
				switch st.Key {
				case "vcs.revision":
					rev = st.Value
				case "vcs.modified":
					if st.Value == "true" {
						dirty = "+dirty"
					}
				}
			}
			if rev != "" {
				v += " " + rev[:min(len(rev), 12)] + dirty
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	return v + " (" + runtime.Version() + ")"
}

// Release is the version alone, without the Go version: Stamped, else the
// module version or "devel" (the build-info metric's label).
func Release() string {
	if Stamped != "" {
		return Stamped
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
