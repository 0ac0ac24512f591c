package cleaner

import (
	"fmt"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// checkCleanSection verifies what a pass promises about [log start, end):
// batches and offsets strictly increase, every batch passes its CRC, and no
// key appears twice (control batches, the transaction markers, hold no
// keyed data). Only with -tags invariants (it reads the whole clean
// section again); it panics on a violation.
func checkCleanSection(l *engine.Log, end engine.Offset) {
	var dec record.Decoder
	seen := map[[2]uint64]int64{}
	m := &OffsetMap{} // for Digest only
	prev := int64(-1)
	for _, s := range l.CleanerSegments() {
		if s.Active || s.BaseOffset >= end {
			break
		}
		v, err := l.ViewSegment(s)
		if err != nil {
			return // the log changed meanwhile: nothing to check
		}
		for rest := v.Data; len(rest) > 0; {
			b, r, err := record.ReadBatch(rest)
			if err != nil || b.VerifyCRC() != nil {
				panic(fmt.Sprintf("cleaner invariant: %s segment %d: bad batch after a pass: %v", l.TopicPartition(), s.BaseOffset, err))
			}
			rest = r
			if b.BaseOffset() <= prev {
				panic(fmt.Sprintf("cleaner invariant: %s batch at %d after offset %d", l.TopicPartition(), b.BaseOffset(), prev))
			}
			base := b.BaseOffset()
			control := b.IsControl()
			err = dec.Records(b, func(rec *record.Record) error {
				o := base + int64(rec.OffsetDelta)
				if o <= prev {
					return fmt.Errorf("offset %d after %d", o, prev)
				}
				prev = o
				if o >= int64(end) || rec.Key == nil || control {
					return nil
				}
				h1, h2 := m.Digest(rec.Key)
				if first, dup := seen[[2]uint64{h1, h2}]; dup {
					return fmt.Errorf("key %q at %d and %d below the clean end %d", rec.Key, first, o, end)
				}
				seen[[2]uint64{h1, h2}] = o
				return nil
			})
			if err != nil {
				panic(fmt.Sprintf("cleaner invariant: %s: %v", l.TopicPartition(), err))
			}
			prev = max(prev, b.LastOffset())
		}
		v.Release()
	}
}
