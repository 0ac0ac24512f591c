package checkpoint

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"testing"
)

var offsetSeeds = []string{
	"",
	"0\n0\n",
	"0\n1\nt 0 5\n",
	"0\n3\n__consumer_offsets 0 0\na.b_c 1 42\nuser-profiles 10 7\n",
	"0\r\n1\r\nt  0\t5 \r\n",
	"0\n2\nt 0 5\nt 0 9\n",
	"0\n1\nt -1 5\n",
	"1\n0\n",
	"0\n2\nt 0 5\n",
	"0\n1\nt 2147483648 5\n",
	"0\n1\n t 0 5\n",
}

// FuzzReadOffsets feeds arbitrary bytes to the offset-checkpoint parser.
// Invariants:
//   - it never panics;
//   - it either succeeds or returns an error matching ErrMalformed (a
//     *MalformedError with a line number >= 1);
//   - a successful parse formats without error (every parsed entry is
//     writable), and re-parsing that output gives an identical map;
//   - formatting is a fixed point: format(parse(format(m))) == format(m).
func FuzzReadOffsets(f *testing.F) {
	for _, s := range offsetSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseOffsets("fuzz", data)
		if err != nil {
			var me *MalformedError
			if !errors.Is(err, ErrMalformed) || !errors.As(err, &me) || me.Line < 1 {
				t.Fatalf("error %v is not a *MalformedError", err)
			}
			return
		}
		out, err := formatOffsets(m)
		if err != nil {
			t.Fatalf("parsed %v but cannot write it: %v", m, err)
		}
		m2, err := parseOffsets("fuzz", out)
		if err != nil {
			t.Fatalf("re-read of %q: %v", out, err)
		}
		if !maps.Equal(m, m2) {
			t.Fatalf("round trip changed %v to %v", m, m2)
		}
		out2, err := formatOffsets(m2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("format not stable: %q vs %q (%v)", out, out2, err)
		}
	})
}

var epochSeeds = []string{
	"",
	"0\n0\n",
	"0\n3\n0 0\n2 6\n3 8\n",
	"0\n3\n2 6\n1 7\n3 5\n",
	"0\n2\n5 10\n5 3\n",
	"0\n1\n-1 0\n",
	"0\n1\n2147483647 9223372036854775807\n",
	"0\n2\n1\t 0\r\n2 5",
	"0\n1\n0 0 0\n",
}

// FuzzEpochCheckpoint feeds arbitrary bytes to the leader-epoch-checkpoint
// parser and replays the result as OpenEpochCache does. Invariants:
//   - it never panics;
//   - it either succeeds or returns an error matching ErrMalformed (a
//     *MalformedError with a line number >= 1);
//   - the loaded entries strictly increase in epoch and start offset, and
//     are no more than the file holds;
//   - writing the loaded entries and reading them back gives identical
//     entries, and replaying them through Assign changes nothing;
//   - formatting is a fixed point;
//   - EndOffsetFor and EpochForOffset agree with the naive models on the
//     loaded entries.
func FuzzEpochCheckpoint(f *testing.F) {
	for _, s := range epochSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := parseEpochs("fuzz", data)
		if err != nil {
			var me *MalformedError
			if !errors.Is(err, ErrMalformed) || !errors.As(err, &me) || me.Line < 1 {
				t.Fatalf("error %v is not a *MalformedError", err)
			}
			return
		}
		var es []EpochEntry
		for _, e := range raw {
			es, _ = assignEntry(es, e)
		}
		if len(es) > len(raw) {
			t.Fatalf("%d entries loaded from %d", len(es), len(raw))
		}
		for i := 1; i < len(es); i++ {
			if es[i].Epoch <= es[i-1].Epoch || es[i].StartOffset <= es[i-1].StartOffset {
				t.Fatalf("loaded entries not strictly increasing: %v", es)
			}
		}
		out := formatEpochs(es)
		back, err := parseEpochs("fuzz", out)
		if err != nil {
			t.Fatalf("re-read of %q: %v", out, err)
		}
		if !slices.Equal(es, back) {
			t.Fatalf("round trip changed %v to %v", es, back)
		}
		var replay []EpochEntry
		for _, e := range back {
			var changed bool
			replay, changed = assignEntry(replay, e)
			if !changed {
				t.Fatalf("replaying %v dropped %v", back, e)
			}
		}
		if !slices.Equal(replay, es) {
			t.Fatalf("replay of written entries gives %v, want %v", replay, es)
		}
		if out2 := formatEpochs(back); !bytes.Equal(out, out2) {
			t.Fatalf("format not stable: %q vs %q", out, out2)
		}
		probes := []int32{UndefinedEpoch, -2, 0}
		for _, e := range es {
			probes = append(probes, e.Epoch-1, e.Epoch, e.Epoch+1)
		}
		for _, req := range probes {
			ge, go_ := endOffsetFor(es, req, 1<<40)
			we, wo := naiveEndOffsetFor(es, req, 1<<40)
			if ge != we || go_ != wo {
				t.Fatalf("EndOffsetFor(%d) on %v = (%d,%d), naive (%d,%d)", req, es, ge, go_, we, wo)
			}
		}
		c := &EpochCache{entries: es}
		for _, e := range es {
			for _, off := range []int64{e.StartOffset - 1, e.StartOffset, e.StartOffset + 1} {
				ge, gok := c.EpochForOffset(off)
				we, wok := naiveEpochForOffset(es, off)
				if ge != we || gok != wok {
					t.Fatalf("EpochForOffset(%d) on %v = (%d,%v), naive (%d,%v)", off, es, ge, gok, we, wok)
				}
			}
		}
	})
}
