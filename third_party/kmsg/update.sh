#!/bin/sh
# Re-creates this patched copy of github.com/twmb/franz-go/pkg/kmsg from the
# upstream module (go.mod's required version, or $1) and applies the
# tag-loop bound described in PATCHES.md. Run from anywhere; needs the Go
# toolchain and the module proxy.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version=${1:-$(cd "$here/../.." && go list -m -f '{{.Version}}' github.com/twmb/franz-go/pkg/kmsg)}
src=$(cd "$here/../.." && GOFLAGS=-mod=mod go mod download -json "github.com/twmb/franz-go/pkg/kmsg@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "kmsg $version not found" >&2; exit 1; }
for f in go.mod LICENSE api.go generated.go record.go internal/kbin/primitives.go; do
	mkdir -p "$here/$(dirname "$f")"
	cp "$src/$f" "$here/$f"
	chmod u+w "$here/$f"
done
# The patch: every tagged-field loop stops once its reader has failed.
sed -i 's/for i := b\.Uvarint(); i > 0; i-- {/for i := b.Uvarint(); i > 0 \&\& b.Ok(); i-- {/' "$here/generated.go"
sed -i 's/for num := b\.Uvarint(); num > 0; num-- {/for num := b.Uvarint(); num > 0 \&\& tagReaderOk(b); num-- {/' "$here/api.go"
cat >>"$here/api.go" <<'GO'

// tagReaderOk reports whether a tag reader has not failed; readers that
// cannot tell (no Ok method) are assumed fine. kvlog patch: see PATCHES.md.
func tagReaderOk(b any) bool {
	if r, ok := b.(interface{ Ok() bool }); ok {
		return r.Ok()
	}
	return true
}
GO
n=$(grep -c 'i > 0 && b.Ok(); i--' "$here/generated.go")
m=$(grep -c 'num > 0 && tagReaderOk(b); num--' "$here/api.go")
unpatched=$(grep -c 'b.Uvarint(); [a-z]* > 0; [a-z]*--' "$here/generated.go" "$here/api.go" | awk -F: '{s+=$2} END {print s}')
echo "kmsg $version: patched $n generated tag loops and $m in api.go; $unpatched unpatched"
[ "$unpatched" = 0 ]
