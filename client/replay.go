package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The replay engine. Open rebuilds the state with its own fetch loop
// rather than franz-go's consumer, which decodes every record into a
// kgo.Record (a pointer-rich struct the garbage collector then scans) and
// leaves the map to copy each key into a string. Here the records are
// decoded in place: a decoded record is a few offsets into the fetch
// response's bytes, and the state's slots point at the same bytes (see
// state). Three goroutines form a pipeline, so that the replay uses both
// the network and more than one core:
//
//   - a fetcher per partition leader sends Fetch requests (through the
//     admin client's connections: TLS and SASL from WithKgoOptions apply)
//     and, from the batch headers alone, the next request's offsets, so the
//     next fetch is in flight while the previous response is decoded;
//   - the decoder checks each batch's CRC, decompresses it, skips control
//     batches and records below the fetch offset, and hashes the keys;
//   - the table's goroutine inserts the decoded records under the lock and
//     reports progress.
//
// The engine handles the common case only: record batches (magic 2),
// read_uncommitted, partition leaders that answer without error. On
// anything else — a fetch or partition error, a leader change, an old
// message format, a corrupt batch, a partition that stops advancing below
// its target — it stops, and franz-go's consumer continues from the
// positions reached, with its retries, resets and the stall timeout. The
// result is the same either way; only the speed differs.

// replayFault, when set (by tests), is asked before each fetch of the
// engine (numbered from 0) and makes the engine give up when it returns an
// error.
var replayFault func(fetch int) error

// errReplayStalled: a fetch brought nothing new for any partition.
var errReplayStalled = errors.New("no progress")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record batch layout (magic 2): the offsets of the header fields used.
const (
	batchLengthEnd    = 12 // base offset int64, length int32
	batchMagic        = 16
	batchCRC          = 17
	batchAttrs        = 21 // CRC covers from here to the batch's end
	batchLastDelta    = 23
	batchFirstTS      = 27
	batchMaxTS        = 35
	batchNumRecords   = 57
	batchHeaderLen    = 61
	attrCompression   = 0x07
	attrLogAppendTime = 0x08
	attrControl       = 0x20
)

// replayRec is one decoded record: where its key and value are in its
// chunk's buffers. Pointer-free, so a chunk's records cost the garbage
// collector nothing.
type replayRec struct {
	h      uint64
	offset int64
	ts     int64 // milliseconds
	buf    uint32
	koff   uint32
	klen   int32 // -1: null key
	voff   uint32
	vlen   int32 // -1: null value, a tombstone
	part   int32
}

// partEnd is a partition's next offset after a chunk.
type partEnd struct {
	part int32
	next int64
}

// rawPart is one partition's record batches in a fetch response.
type rawPart struct {
	part    int32
	from    int64 // the fetch offset: records below it are skipped
	next    int64 // after the last complete batch
	batches []byte
}

type rawFetch struct {
	parts []rawPart
	err   error
}

// replayChunk is decoded records: one partition of a fetch response.
type replayChunk struct {
	bufs [][]byte
	recs []replayRec
	ends []partEnd
	err  error
}

// fastReplayUsable reports whether the replay engine can serve this table.
func (t *Table) fastReplayUsable() bool {
	if lvl, ok := t.w.cl.OptValue(kgo.FetchIsolationLevel).(int8); !ok || lvl != 0 {
		return false // read_committed: franz-go filters aborted transactions
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for p, target := range t.targets {
		if t.next[p] < target {
			return true
		}
	}
	return false
}

// replayLeaders asks for the topic's ID and the leader of every partition
// still to replay.
func (t *Table) replayLeaders(ctx context.Context) (map[int32][]int32, [16]byte, error) {
	var id [16]byte
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(t.topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, t.w.cl)
	if err != nil {
		return nil, id, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, mt := range resp.Topics {
		if mt.Topic == nil || *mt.Topic != t.topic {
			continue
		}
		if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
			return nil, id, err
		}
		leaders := make(map[int32][]int32)
		seen := 0
		for _, mp := range mt.Partitions {
			target, ok := t.targets[mp.Partition]
			if !ok || t.next[mp.Partition] >= target {
				continue
			}
			if err := kerr.ErrorForCode(mp.ErrorCode); err != nil {
				return nil, id, fmt.Errorf("partition %d: %w", mp.Partition, err)
			}
			if mp.Leader < 0 {
				return nil, id, fmt.Errorf("partition %d: no leader", mp.Partition)
			}
			leaders[mp.Leader] = append(leaders[mp.Leader], mp.Partition)
			seen++
		}
		pending := 0
		for p, target := range t.targets {
			if t.next[p] < target {
				pending++
			}
		}
		if seen != pending {
			return nil, id, fmt.Errorf("metadata lists %d of %d partitions to replay", seen, pending)
		}
		return leaders, mt.TopicID, nil
	}
	return nil, id, ErrTopicNotFound
}

// fastReplay replays with the engine until every partition reaches its
// target (closing t.replay) or the engine gives up; the franz-go consumer
// then continues from t.next. It returns only an apply callback's error.
func (t *Table) fastReplay(lastProgress *time.Time) error {
	if !t.fastReplayUsable() {
		return nil
	}
	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	leaders, topicID, err := t.replayLeaders(ctx)
	if err != nil {
		return nil
	}
	t.mu.RLock()
	starts := make(map[int32]int64, len(t.next))
	for p, o := range t.next {
		starts[p] = o
	}
	t.mu.RUnlock()

	raw := make(chan rawFetch, 1)
	decoded := make(chan *replayChunk, 2)
	spare := make(chan []replayRec, 4) // decoded record slices handed back for reuse
	var fetchers sync.WaitGroup
	for leader, parts := range leaders {
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			t.fetchLoop(ctx, leader, topicID, parts, starts, raw)
		}()
	}
	rawClosed := make(chan struct{})
	go func() {
		fetchers.Wait()
		close(raw)
		close(rawClosed)
	}()
	go decodeLoop(ctx, raw, decoded, spare)
	defer func() { // stop and wait for every goroutine of the pipeline
		cancel()
		for range decoded { // closed when the decoder returns
		}
		<-rawClosed
	}()

	for c := range decoded {
		if c.err != nil || t.ctx.Err() != nil {
			return nil
		}
		if err := t.applyChunk(c); err != nil {
			return err
		}
		select {
		case spare <- c.recs[:0]:
		default:
		}
		t.mu.Lock()
		finished := t.caughtUpLocked() && t.finishReplayLocked()
		t.mu.Unlock()
		t.report(finished, lastProgress)
		if finished {
			close(t.replay)
			return nil
		}
	}
	return nil
}

// fetchLoop fetches parts from leader until each reaches its target,
// sending the raw responses to out. It stops on the first error (sent to
// out) or when ctx ends.
func (t *Table) fetchLoop(ctx context.Context, leader int32, topicID [16]byte, parts []int32, starts map[int32]int64, out chan<- rawFetch) {
	pos := make(map[int32]int64, len(parts))
	for _, p := range parts {
		pos[p] = starts[p]
	}
	send := func(f rawFetch) bool {
		select {
		case out <- f:
			return true
		case <-ctx.Done():
			return false
		}
	}
	br := t.w.cl.Broker(int(leader))
	for fetch := 0; ; fetch++ {
		if replayFault != nil {
			if err := replayFault(fetch); err != nil {
				send(rawFetch{err: err})
				return
			}
		}
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis = int32(t.o.fetchMaxWait / time.Millisecond)
		req.MinBytes = 1
		req.MaxBytes = t.o.fetchMaxBytes
		req.SessionID = 0
		req.SessionEpoch = -1 // no fetch session: every request is a full fetch
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = t.topic
		rt.TopicID = topicID
		for _, p := range parts {
			if pos[p] >= t.targets[p] {
				continue
			}
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition = p
			rp.FetchOffset = pos[p]
			rp.PartitionMaxBytes = t.o.partMaxBytes
			rt.Partitions = append(rt.Partitions, rp)
		}
		if len(rt.Partitions) == 0 {
			return
		}
		req.Topics = append(req.Topics, rt)
		kresp, err := br.Request(ctx, req)
		resp, ok := kresp.(*kmsg.FetchResponse)
		if err == nil && !ok {
			err = fmt.Errorf("fetch answered with %T", kresp)
		}
		if err != nil {
			send(rawFetch{err: err})
			return
		}
		f, err := scanFetch(resp, t.topic, topicID, pos)
		if err == nil && len(f.parts) == 0 {
			err = errReplayStalled
		}
		if err != nil {
			send(rawFetch{err: err})
			return
		}
		for _, rp := range f.parts {
			pos[rp.part] = rp.next
		}
		if !send(f) {
			return
		}
	}
}

// scanFetch checks a fetch response and finds, from the batch headers, each
// partition's next fetch offset. Partitions that did not advance are left
// out.
func scanFetch(resp *kmsg.FetchResponse, topic string, topicID [16]byte, pos map[int32]int64) (rawFetch, error) {
	var f rawFetch
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return f, err
	}
	for _, rt := range resp.Topics {
		if rt.Topic != topic && rt.TopicID != topicID {
			continue
		}
		for _, rp := range rt.Partitions {
			from, ok := pos[rp.Partition]
			if !ok {
				continue
			}
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return f, fmt.Errorf("partition %d: %w", rp.Partition, err)
			}
			next := from
			in := rp.RecordBatches
			for len(in) > batchMagic {
				length := int64(int32(binary.BigEndian.Uint32(in[8:])))
				total := batchLengthEnd + length
				if length < 0 || int64(len(in)) < total {
					break // a partial batch at the end of the response
				}
				if in[batchMagic] != 2 || total < batchHeaderLen {
					return f, fmt.Errorf("partition %d: a batch with magic %d, length %d", rp.Partition, in[batchMagic], length)
				}
				base := int64(binary.BigEndian.Uint64(in))
				if end := base + int64(int32(binary.BigEndian.Uint32(in[batchLastDelta:]))) + 1; end > next {
					next = end
				}
				in = in[total:]
			}
			if next > from {
				f.parts = append(f.parts, rawPart{part: rp.Partition, from: from, next: next, batches: rp.RecordBatches})
			}
		}
	}
	return f, nil
}

// decodeLoop decodes the fetchers' responses in order, one chunk per
// partition of a response (so the table starts inserting sooner, and a
// chunk's records stay small). It closes out when in is closed, after a
// failed chunk, or when ctx ends.
func decodeLoop(ctx context.Context, in <-chan rawFetch, out chan<- *replayChunk, spare <-chan []replayRec) {
	defer close(out)
	dec := kgo.DefaultDecompressor()
	for f := range in {
		n := max(1, len(f.parts))
		for i := range n {
			c := &replayChunk{err: f.err}
			select {
			case c.recs = <-spare:
			default:
			}
			if c.err == nil && i < len(f.parts) {
				c.err = c.decode(rawFetch{parts: f.parts[i : i+1]}, dec)
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
			if c.err != nil {
				return
			}
		}
	}
}

// decode decodes every record at or above its partition's fetch offset.
func (c *replayChunk) decode(f rawFetch, dec kgo.Decompressor) error {
	for _, rp := range f.parts {
		pbuf := uint32(len(c.bufs))
		c.bufs = append(c.bufs, rp.batches)
		c.recs = slices.Grow(c.recs, countRecords(rp.batches))
		in, at := rp.batches, 0
		for len(in) > batchMagic {
			length := int64(int32(binary.BigEndian.Uint32(in[8:])))
			total := batchLengthEnd + length
			if length < 0 || int64(len(in)) < total {
				break
			}
			if in[batchMagic] != 2 || total < batchHeaderLen {
				return fmt.Errorf("partition %d: a batch with magic %d, length %d", rp.part, in[batchMagic], length)
			}
			b := in[:total]
			base := int64(binary.BigEndian.Uint64(b))
			if crc := crc32.Checksum(b[batchAttrs:], castagnoli); crc != binary.BigEndian.Uint32(b[batchCRC:]) {
				return fmt.Errorf("partition %d: batch at offset %d: crc mismatch", rp.part, base)
			}
			attrs := binary.BigEndian.Uint16(b[batchAttrs:])
			last := base + int64(int32(binary.BigEndian.Uint32(b[batchLastDelta:])))
			if last >= rp.from && attrs&attrControl == 0 {
				data, dbuf, doff := b[batchHeaderLen:], pbuf, at+batchHeaderLen
				if codec := attrs & attrCompression; codec != 0 {
					out, err := dec.Decompress(data, kgo.CompressionCodecType(codec))
					if err != nil {
						return fmt.Errorf("partition %d: batch at offset %d: %w", rp.part, base, err)
					}
					if uint64(len(out)) > 1<<32-1 {
						return fmt.Errorf("partition %d: batch at offset %d decompresses to %d bytes", rp.part, base, len(out))
					}
					dbuf, doff = uint32(len(c.bufs)), 0
					c.bufs = append(c.bufs, out)
					data = out
				}
				h := batchInfo{
					part:      rp.part,
					base:      base,
					from:      rp.from,
					firstTS:   int64(binary.BigEndian.Uint64(b[batchFirstTS:])),
					maxTS:     int64(binary.BigEndian.Uint64(b[batchMaxTS:])),
					logAppend: attrs&attrLogAppendTime != 0,
					buf:       dbuf,
					at:        uint32(doff),
					n:         int32(binary.BigEndian.Uint32(b[batchNumRecords:])),
				}
				var err error
				if c.recs, err = h.decodeRecords(c.recs, data); err != nil {
					return err
				}
			}
			in, at = in[total:], at+int(total)
		}
		c.ends = append(c.ends, partEnd{part: rp.part, next: rp.next})
	}
	return nil
}

// countRecords sums the record counts of the complete batches in in (an
// upper bound on the records decoded from them), at most one per byte.
func countRecords(in []byte) int {
	n := 0
	for len(in) >= batchHeaderLen {
		length := int64(int32(binary.BigEndian.Uint32(in[8:])))
		total := batchLengthEnd + length
		if total < batchHeaderLen || int64(len(in)) < total {
			break
		}
		n += int(max(0, min(int32(binary.BigEndian.Uint32(in[batchNumRecords:])), int32(total))))
		in = in[total:]
	}
	return n
}

type batchInfo struct {
	part      int32
	base      int64
	from      int64
	firstTS   int64
	maxTS     int64
	logAppend bool
	buf       uint32 // the buffer data is in
	at        uint32 // data's offset in it
	n         int32  // records in the batch
}

// decodeRecords appends the batch's records at or above b.from to recs.
// data is the batch's (decompressed) records. A record is: length varint,
// attributes int8, timestamp delta varlong, offset delta varint, key
// (varint length, -1 for null), value (the same), headers; the headers are
// skipped with the record's length.
func (b *batchInfo) decodeRecords(recs []replayRec, data []byte) ([]replayRec, error) {
	corrupt := func(what string) error {
		return fmt.Errorf("partition %d: batch at offset %d: corrupt record (%s)", b.part, b.base, what)
	}
	if b.n < 0 || int(b.n) > len(data) {
		return recs, corrupt("record count")
	}
	pos := 0
	for range b.n {
		l, k := binary.Varint(data[pos:])
		if k <= 0 || l < 1 || l > int64(len(data)-pos-k) {
			return recs, corrupt("length")
		}
		pos += k
		start := pos
		r := data[pos : pos+int(l)]
		pos += int(l)
		q := 1 // attributes: unused
		tsDelta, k := binary.Varint(r[q:])
		if k <= 0 {
			return recs, corrupt("timestamp")
		}
		q += k
		offDelta, k := binary.Varint(r[q:])
		if k <= 0 {
			return recs, corrupt("offset")
		}
		q += k
		klen, k := binary.Varint(r[q:])
		if k <= 0 || klen < -1 || klen > int64(len(r)-q-k) {
			return recs, corrupt("key")
		}
		q += k
		koff := q
		q += int(max(klen, 0))
		vlen, k := binary.Varint(r[q:])
		if k <= 0 || vlen < -1 || vlen > int64(len(r)-q-k) {
			return recs, corrupt("value")
		}
		q += k
		offset := b.base + offDelta
		if offset < b.from {
			continue
		}
		ts := b.firstTS + tsDelta
		if b.logAppend {
			ts = b.maxTS
		}
		recs = append(recs, replayRec{
			h:      keyHash(r[koff : koff+int(max(klen, 0))]),
			offset: offset,
			ts:     ts,
			buf:    b.buf,
			koff:   b.at + uint32(start+koff),
			klen:   int32(klen),
			voff:   b.at + uint32(start+q),
			vlen:   int32(vlen),
			part:   b.part,
		})
	}
	return recs, nil
}

// sub is buf[off:off+n] with its capacity cut, or nil when n is -1.
func sub(buf []byte, off uint32, n int32) []byte {
	if n < 0 {
		return nil
	}
	end := off + uint32(n)
	return buf[off:end:end]
}

// applyChunk hands a decoded chunk to the apply callback or the state and
// advances the positions.
func (t *Table) applyChunk(c *replayChunk) error {
	var tombs, nbytes int64
	for i := range c.recs {
		r := &c.recs[i]
		if r.vlen < 0 {
			tombs++
		}
		nbytes += int64(max(r.klen, 0)) + int64(max(r.vlen, 0))
	}
	if t.o.apply != nil {
		for i := range c.recs {
			r := &c.recs[i]
			b := c.bufs[r.buf]
			rec := Record{Key: sub(b, r.koff, r.klen), Value: sub(b, r.voff, r.vlen), Partition: r.part, Offset: r.offset, Timestamp: time.UnixMilli(r.ts)}
			if err := t.o.apply(rec); err != nil {
				return topicErr(t.topic, "apply", err)
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.st; st != nil {
		ids := make([]uint32, len(c.bufs))
		for i, b := range c.bufs {
			ids[i] = st.addBuf(b)
		}
		for i := range c.recs {
			r := &c.recs[i]
			klen := uint32(max(r.klen, 0))
			if r.vlen < 0 {
				st.del(r.h, c.bufs[r.buf][r.koff:r.koff+klen])
				continue
			}
			st.put(r.h, ids[r.buf], r.koff, klen, r.voff, uint32(r.vlen))
		}
		for _, id := range ids {
			st.unpin(id)
		}
	}
	t.records += int64(len(c.recs))
	t.engineRecords += int64(len(c.recs))
	t.tombs += tombs
	t.bytes += nbytes
	advanced := false
	for _, e := range c.ends {
		if e.next > t.next[e.part] {
			t.next[e.part] = e.next
			advanced = true
		}
	}
	if advanced {
		close(t.changed)
		t.changed = make(chan struct{})
	}
	return nil
}
