package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/wire"
)

// The kmsg tagged-field loop (third_party/kmsg/PATCHES.md): a flexible
// request whose tag count is huge and whose bytes then run out must be
// refused after work bounded by its length, not after ~2^32 iterations.

// hugeTags is the largest tag count kmsg reads (a 32-bit uvarint).
var hugeTags = binary.AppendUvarint(nil, 1<<32-1)

// countingTagReader counts the reads kmsg's tag reader makes, and panics
// with errTooManyReads past limit, so an unbounded loop fails the test at
// once instead of running 2^32 times.
type countingTagReader struct {
	kbin.Reader
	reads, limit int
}

var errTooManyReads = errors.New("tag loop read past its input")

func (r *countingTagReader) count() {
	if r.reads++; r.reads > r.limit {
		panic(errTooManyReads)
	}
}

func (r *countingTagReader) Uvarint() uint32   { r.count(); return r.Reader.Uvarint() }
func (r *countingTagReader) Span(n int) []byte { r.count(); return r.Reader.Span(n) }

// TestTagLoopBoundedByInput measures the loop through kmsg's exported tag
// readers, which carry the same patch as the generated decoders: the reads
// made on a truncated section are bounded by its length, whatever its
// count says.
func TestTagLoopBoundedByInput(t *testing.T) {
	for _, count := range []uint64{1<<32 - 1, 1 << 20, 3} {
		for name, read := range map[string]func(kmsg.TagReader){
			"SkipTags": kmsg.SkipTags,
			"ReadTags": func(r kmsg.TagReader) { kmsg.ReadTags(r) },
		} {
			in := binary.AppendUvarint(nil, count)
			in = append(in, 1, 2, 'h', 'i') // one entry (tag 1, 2 bytes), then nothing
			// One read for the count, three per entry present, three for
			// the entry that fails.
			const bound = 1 + 3*2
			r := &countingTagReader{Reader: kbin.Reader{Src: in}, limit: 1000}
			func() {
				defer func() {
					if v := recover(); v != nil {
						t.Fatalf("%s count %d: over %d reads for a %d-byte section: the tag loop is not bounded by its input", name, count, r.limit, len(in))
					}
				}()
				read(r)
			}()
			if r.Ok() {
				t.Fatalf("%s count %d: a truncated section read as complete", name, count)
			}
			if r.reads > bound {
				t.Fatalf("%s count %d: %d reads for a %d-byte section, bound %d", name, count, r.reads, len(in), bound)
			}
		}
	}
}

// TestKmsgIsPatched checks that the build uses the patched kmsg and that
// no generated tag loop lacks the bound (a kmsg upgrade without re-running
// third_party/kmsg/update.sh fails here, not as a CPU burn in production).
func TestKmsgIsPatched(t *testing.T) {
	if err := kmsgPatched(); err != nil {
		t.Fatal(err)
	}
}

func kmsgPatched() error {
	// The compiled kmsg's source file (absolute unless built with
	// -trimpath) must be the patched copy, and go.mod must say so.
	pc := reflect.ValueOf(kmsg.SkipTags).Pointer()
	file, _ := runtime.FuncForPC(pc).FileLine(pc)
	dir, err := filepath.Abs(filepath.Join("..", "third_party", "kmsg"))
	if err != nil {
		return err
	}
	if filepath.IsAbs(file) && filepath.Dir(file) != dir {
		return fmt.Errorf("kmsg is compiled from %s, not the patched copy in %s", filepath.Dir(file), dir)
	}
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		return err
	}
	if !regexp.MustCompile(`(?m)^replace github\.com/twmb/franz-go/pkg/kmsg => \./third_party/kmsg$`).Match(gomod) {
		return errors.New("go.mod does not replace kmsg with ./third_party/kmsg")
	}
	unbounded := regexp.MustCompile(`b\.Uvarint\(\); \w+ > 0; \w+--`)
	bounded := regexp.MustCompile(`b\.Uvarint\(\); \w+ > 0 && (b\.Ok\(\)|tagReaderOk\(b\)); \w+--`)
	total := 0
	for _, f := range []string{"generated.go", "api.go"} {
		src, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		if locs := unbounded.FindAllIndex(src, -1); len(locs) > 0 {
			return fmt.Errorf("%s: %d tag loops without the input bound; re-run third_party/kmsg/update.sh", f, len(locs))
		}
		total += len(bounded.FindAllIndex(src, -1))
	}
	if total < 22 {
		return fmt.Errorf("only %d bounded tag loops found in %s (want the 19 generated + 3 in api.go)", total, dir)
	}
	return nil
}

// TestHugeTagCountRejected sends every served flexible request version,
// well formed except that its top-level tag section claims 2^32-1 fields
// and ends there, through the frame parser: each is refused as an
// undecodable body. Unpatched kmsg spends ~45 s of CPU on each.
func TestHugeTagCountRejected(t *testing.T) {
	if err := kmsgPatched(); err != nil {
		t.Fatalf("not sending huge tag counts to an unpatched kmsg (each costs ~45 s of CPU): %v", err)
	}
	n := 0
	for key, h := range handlers {
		for v := h.versions.Min; v <= h.versions.Max; v++ {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			if !req.IsFlexible() {
				continue
			}
			body := req.AppendTo(nil)
			if body[len(body)-1] != 0 {
				t.Fatalf("%s v%d: encoding does not end in an empty tag section", apiName(key), v)
			}
			hdr := binary.BigEndian.AppendUint16(nil, uint16(key))
			hdr = binary.BigEndian.AppendUint16(hdr, uint16(v))
			hdr = append(hdr, 0, 0, 0, 1, 0, 1, 'c', 0) // corr 1, client id "c", no header tags
			frame := append(append(hdr, body[:len(body)-1]...), hugeTags...)

			// Well formed except for the count: the body without it parses.
			if _, _, err := wire.ParseRequest(append(append([]byte{}, hdr...), body...), servedByRegistry); err != nil {
				t.Fatalf("%s v%d: the valid request: %v", apiName(key), v, err)
			}
			gotHdr, _, err := wire.ParseRequest(frame, servedByRegistry)
			if !errors.Is(err, wire.ErrBadBody) || gotHdr.Key != key || gotHdr.Version != v {
				t.Fatalf("%s v%d: got %v (header %+v), want errBadBody", apiName(key), v, err, gotHdr)
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("only %d flexible request versions served", n)
	}

	// A huge count in the request header's own tag section (parsed by
	// hand, bounded by the bytes present).
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 9
	frame := []byte{0, 3, 0, 9, 0, 0, 0, 1, 0, 1, 'c'}
	frame = append(append(frame, hugeTags...), req.AppendTo(nil)...)
	if _, _, err := wire.ParseRequest(frame, servedByRegistry); !errors.Is(err, wire.ErrShortHeader) {
		t.Fatalf("huge header tag count: %v", err)
	}
}
