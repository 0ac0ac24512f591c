// Package buildinfo owns how kvlog's binaries describe their build for
// --version: a version set at link time, else what the Go toolchain
// recorded (the module version of a tagged build, or the VCS revision and
// whether the tree was modified), followed by the Go version.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version describes the build. set is the version given at link time
// (-ldflags "-X main.version=…"); "" falls back to the build info.
func Version(set string) string {
	v := set
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
