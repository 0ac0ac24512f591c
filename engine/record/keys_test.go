package record

import (
	"bytes"
	"testing"
)

type keyRec struct {
	delta int32
	key   []byte
	tomb  bool
}

// FuzzKeys: on every batch Records accepts, Keys reports the same offset
// deltas, keys and tombstones; on any input it never panics.
func FuzzKeys(f *testing.F) {
	for _, b := range seedBatches(f) {
		f.Add(uint16(b.Attributes()), b.NumRecords(), b.LastOffsetDelta(), []byte(b.Records()))
	}
	f.Fuzz(func(t *testing.T, attrs uint16, count, lastDelta int32, records []byte) {
		b := craftBatch(int16(attrs), count, lastDelta, records)
		var dec Decoder
		var want, got []keyRec
		werr := dec.Records(b, func(r *Record) error {
			if r.Key != nil {
				want = append(want, keyRec{r.OffsetDelta, bytes.Clone(r.Key), r.Value == nil})
			}
			return nil
		})
		gerr := dec.Keys(b, func(d int32, k []byte, tomb bool) { got = append(got, keyRec{d, bytes.Clone(k), tomb}) })
		if werr != nil {
			return
		}
		if gerr != nil {
			t.Fatalf("Keys refused a batch Records accepts: %v", gerr)
		}
		if len(got) != len(want) {
			t.Fatalf("Keys: %d keyed records, Records %d", len(got), len(want))
		}
		for i := range got {
			if got[i].delta != want[i].delta || !bytes.Equal(got[i].key, want[i].key) || got[i].tomb != want[i].tomb {
				t.Fatalf("record %d: Keys %+v, Records %+v", i, got[i], want[i])
			}
		}
	})
}
