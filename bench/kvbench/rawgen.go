package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The pre-encoded produce load generator (-producer raw, the default).
//
// franz-go's producer builds, compresses and checksums every batch while the
// clock runs, on the same two cores as the broker: in the one-partition cells
// the client, not the broker, set the rate (kvlogd at a fifth of a core while
// kgo produced its maximum). This generator does that work once per cell,
// before any system is timed: the cell's records (the same key sequence,
// values and murmur2 partitioning as the kgo producer) are cut into batches
// of at most rawBatchRecordBytes of encoded records per partition, each
// batch compressed and checksummed, and each wrapped in its own Produce
// request. A timed run then only writes those bytes, pipelined on
// rawConns connections with at most rawInFlight requests outstanding on
// each, reads the responses in order and counts the records of every
// partition response without error. Every Kafka-protocol system of the
// produce scenario gets the identical bytes.
//
// The batches are v2 (magic 2) record batches without a producer id
// (producer id -1, sequence -1), sent with acks=all or acks=1: the
// non-idempotent produce of a Kafka client with enable.idempotence=false.
// That is the fair choice for a pre-encoded generator: idempotent batches
// carry a per-partition sequence that must grow with every batch (so they
// cannot be sent twice, or reused across runs and systems, and patching the
// sequence means recomputing each batch's CRC while timed), and every
// broker here (kvlogd, Kafka, kfake) skips its producer-state check for
// such batches alike. kvlog's acks=all durability is unchanged by it: the
// fsync before the acknowledgement does not depend on idempotence.
// kafkaProduce (kgo, idempotent at acks=all) stays the generator of every
// other scenario and of -producer kgo.

const (
	rawBatchRecordBytes = 1_000_000 // encoded records per batch, franz-go's batch limit
	rawConns            = 2         // connections per run
	rawInFlight         = 5         // outstanding requests per connection (Kafka's max.in.flight default)
	rawProduceMaxVer    = 12        // kvlogd serves Produce v3-v12, Kafka 4 v3-v13 (v13 names topics by id)
)

// rawBatch is one pre-encoded Produce request: one batch of partition, or
// (a spread cell's) one batch of each of parts.
type rawBatch struct {
	partition int32
	parts     []int32 // nil: the request holds partition's batch only
	records   int
	req       []byte // the whole request, length prefix included, correlation id 0
	nameOff   int    // where rawTopicPlaceholder starts in req
}

// rawTopicPlaceholder is the topic name the requests are encoded with; each
// send writes the run's topic (rawTopicName, the same length) over it in
// a copy of the request's head, so that one encoding serves every run.
const rawTopicPlaceholder = "rawproduce-00000000"

var rawTopicSeq int

// rawTopicName is a fresh topic name for a raw run (Kafka deletes topics
// asynchronously: a name is never reused).
func rawTopicName() string {
	rawTopicSeq++
	return fmt.Sprintf("rawproduce-%08d", rawTopicSeq)
}

// rawCell is a produce cell's records first..first+n-1 as requests, built
// once and sent to every system.
type rawCell struct {
	key     string
	batches []rawBatch
	warm    []rawBatch // one record to each partition, sent before the clock
	bytes   int64      // key+value payload of the batches
	records int
	// conns and inFlight: how a run sends the requests (0: rawConns and
	// rawInFlight).
	conns, inFlight int
}

var (
	rawMu     sync.Mutex
	rawCached = map[string]*rawCell{}
	rawShape  string
)

// rawCellFor returns the requests of shape s (records first..first+n-1,
// Produce version version), building them on first use. Only the current
// shape's cells are kept (a cell's requests are as large as its payload).
func rawCellFor(s shape, first, n int, version int16) (*rawCell, error) {
	key := fmt.Sprintf("%d|%d|%d", first, n, version)
	rawMu.Lock()
	defer rawMu.Unlock()
	if rawShape != s.String() {
		clear(rawCached)
		rawShape = s.String()
	}
	if c, ok := rawCached[key]; ok {
		return c, nil
	}
	c, err := buildRawCell(s, first, n, version)
	if err != nil {
		return nil, err
	}
	c.key = key
	rawCached[key] = c
	return c, nil
}

// kafkaPartition is franz-go's (and the Java client's) key partitioner:
// murmur2 of the key, sign bit cleared, modulo the partition count.
func kafkaPartition(key []byte, partitions int32) int32 {
	return int32((murmur2(key) & 0x7fffffff) % uint32(partitions))
}

func murmur2(b []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(len(b))
	for len(b) >= 4 {
		k := uint32(b[3])<<24 + uint32(b[2])<<16 + uint32(b[1])<<8 + uint32(b[0])
		b = b[4:]
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// appendRecord appends a v2 record (no headers, timestamp delta 0).
func appendRecord(dst []byte, delta int, key, val []byte) []byte {
	var body [32]byte
	b := body[:0]
	b = append(b, 0)                         // attributes
	b = binary.AppendVarint(b, 0)            // timestamp delta
	b = binary.AppendVarint(b, int64(delta)) // offset delta
	b = binary.AppendVarint(b, int64(len(key)))
	size := len(b) + len(key) + binary.PutVarint(make([]byte, binary.MaxVarintLen64), int64(len(val))) + len(val) + 1
	dst = binary.AppendVarint(dst, int64(size))
	dst = append(dst, b...)
	dst = append(dst, key...)
	dst = binary.AppendVarint(dst, int64(len(val)))
	dst = append(dst, val...)
	return binary.AppendVarint(dst, 0) // no headers
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeBatch wraps records (count of them, encoded) in a v2 record batch,
// compressed with comp, without a producer id.
func encodeBatch(records []byte, count int, comp string, ts int64, zenc *zstd.Encoder) ([]byte, error) {
	var attrs int16
	switch comp {
	case "lz4":
		attrs = 3
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		if _, err := w.Write(records); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		records = buf.Bytes()
	case "zstd":
		attrs = 4
		records = zenc.EncodeAll(records, nil)
	}
	b := make([]byte, 0, 61+len(records))
	b = binary.BigEndian.AppendUint64(b, 0)                       // base offset
	b = binary.BigEndian.AppendUint32(b, uint32(49+len(records))) // batch length
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)              // partition leader epoch -1
	b = append(b, 2)                                              // magic
	b = binary.BigEndian.AppendUint32(b, 0)                       // crc, below
	b = binary.BigEndian.AppendUint16(b, uint16(attrs))           // attributes
	b = binary.BigEndian.AppendUint32(b, uint32(count-1))         // last offset delta
	b = binary.BigEndian.AppendUint64(b, uint64(ts))              // base timestamp
	b = binary.BigEndian.AppendUint64(b, uint64(ts))              // max timestamp
	b = binary.BigEndian.AppendUint64(b, 0xffffffffffffffff)      // producer id -1
	b = binary.BigEndian.AppendUint16(b, 0xffff)                  // producer epoch -1
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)              // base sequence -1
	b = binary.BigEndian.AppendUint32(b, uint32(count))           // records
	b = append(b, records...)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b, nil
}

func acksOf(s shape) int16 {
	if s.acks == "1" {
		return 1
	}
	return -1
}

// produceRequest is one Produce request carrying batch for partition, for
// the topic rawTopicPlaceholder.
func produceRequest(s shape, version int16, partition int32, batch []byte) rawBatch {
	b := encodeProduce(s, version, []int32{partition}, [][]byte{batch})
	return rawBatch{partition: partition, req: b, nameOff: bytes.Index(b, []byte(rawTopicPlaceholder))}
}

// encodeProduce encodes a Produce request carrying batches[i] for
// partition parts[i] of rawTopicPlaceholder.
func encodeProduce(s shape, version int16, parts []int32, batches [][]byte) []byte {
	req := kmsg.NewPtrProduceRequest()
	req.Version = version
	req.Acks = acksOf(s)
	req.TimeoutMillis = 30_000
	t := kmsg.NewProduceRequestTopic()
	t.Topic = rawTopicPlaceholder
	for i, partition := range parts {
		p := kmsg.NewProduceRequestTopicPartition()
		p.Partition = partition
		p.Records = batches[i]
		t.Partitions = append(t.Partitions, p)
	}
	req.Topics = append(req.Topics, t)
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("kvbench")).AppendRequest(nil, req, 0)
}

// zstdFor is franz-go's zstd encoder for a shape compressed with zstd
// (nil otherwise; the caller closes it).
func zstdFor(s shape) (*zstd.Encoder, error) {
	if s.comp != "zstd" {
		return nil, nil
	}
	// franz-go's zstd settings: 64 KiB window, default level.
	return zstd.NewWriter(nil, zstd.WithWindowSize(64<<10), zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
}

func buildRawCell(s shape, first, n int, version int16) (*rawCell, error) {
	keys, vals := keySet(s.keys), valuePool(s.valueLen)
	zenc, err := zstdFor(s)
	if err != nil {
		return nil, err
	}
	if zenc != nil {
		defer zenc.Close()
	}
	ts := time.Now().UnixMilli()
	type open struct {
		buf   []byte
		count int
		bytes int64
	}
	parts := make([]open, s.partitions)
	c := &rawCell{}
	seal := func(p int32) error {
		o := &parts[p]
		if o.count == 0 {
			return nil
		}
		b, err := encodeBatch(o.buf, o.count, s.comp, ts, zenc)
		if err != nil {
			return err
		}
		rb := produceRequest(s, version, p, b)
		rb.records = o.count
		c.batches = append(c.batches, rb)
		c.records += o.count
		c.bytes += o.bytes
		o.buf, o.count, o.bytes = o.buf[:0], 0, 0
		return nil
	}
	for i := first; i < first+n; i++ {
		k, v := keys[keyIndex(i, s.keys)], vals[i%len(vals)]
		p := kafkaPartition(k, s.partitions)
		o := &parts[p]
		if o.count > 0 && len(o.buf)+len(k)+len(v)+24 > rawBatchRecordBytes {
			if err := seal(p); err != nil {
				return nil, err
			}
		}
		o.buf = appendRecord(o.buf, o.count, k, v)
		o.count++
		o.bytes += int64(len(k) + len(v))
	}
	for p := range parts {
		if err := seal(int32(p)); err != nil {
			return nil, err
		}
	}
	for p := range s.partitions {
		wb, err := encodeBatch(appendRecord(nil, 0, keys[0], vals[0]), 1, s.comp, ts, zenc)
		if err != nil {
			return nil, err
		}
		w := produceRequest(s, version, p, wb)
		w.records = 1
		c.warm = append(c.warm, w)
	}
	return c, nil
}

// The spread cell's requests (partitions scenario, acks=all produce spread
// over many partitions). A producer writing to many partitions of one
// broker puts a batch of every partition it has records for into each
// Produce request, up to a request size (the Java client's
// max.request.size, 1 MiB by default), and keeps several requests
// outstanding on its one connection to that broker
// (max.in.flight.requests.per.connection, 5 by default). Such a cell's
// records (the same key sequence, values and partitioning as the produce
// cells) are cut, in order, into requests of at most
// rawSpreadRequestBytes: each request carries one batch per partition
// holding that partition's records of its stretch of the sequence, the
// partitions in ascending order. A run sends them on rawSpreadConns
// connection with rawSpreadInFlight requests outstanding. The warm-up
// (one record to every partition) is cut the same way, so that a cell of
// 10,000 partitions does not warm up with 10,000 round trips.
const (
	rawSpreadRequestBytes = 1 << 20 // the Java producer's max.request.size default
	rawSpreadConns        = 1       // one connection per broker, as the Java producer
	rawSpreadInFlight     = 5       // max.in.flight.requests.per.connection default
	// rawSpreadPartBytes: what a partition adds to a request besides its
	// records: the batch header (61 bytes), the partition id and the
	// records' length.
	rawSpreadPartBytes = 61 + 8
	// rawSpreadHeadRoom: the request's own header and topic name.
	rawSpreadHeadRoom = 256
)

// rawSpreadCellFor is rawCellFor for a spread cell (buildRawSpreadCell).
func rawSpreadCellFor(s shape, first, n int, version int16) (*rawCell, error) {
	key := fmt.Sprintf("spread|%d|%d|%d", first, n, version)
	rawMu.Lock()
	defer rawMu.Unlock()
	if rawShape != s.String() {
		clear(rawCached)
		rawShape = s.String()
	}
	if c, ok := rawCached[key]; ok {
		return c, nil
	}
	c, err := buildRawSpreadCell(s, first, n, version)
	if err != nil {
		return nil, err
	}
	c.key = key
	rawCached[key] = c
	return c, nil
}

// spreadCutter cuts records into multi-partition requests of at most
// rawSpreadRequestBytes.
type spreadCutter struct {
	s       shape
	version int16
	ts      int64
	zenc    *zstd.Encoder
	parts   []spreadOpen
	touched []int32 // partitions with records in the open request
	size    int     // the open request's estimated size
	out     []rawBatch
	records int
	bytes   int64
}

type spreadOpen struct {
	buf   []byte
	count int
	bytes int64
}

// add appends record (k, v) of partition p, sealing the open request
// first when the record would not fit in it.
func (sc *spreadCutter) add(p int32, k, v []byte) error {
	o := &sc.parts[p]
	grow := len(k) + len(v) + 24 // the record's encoding, at most
	if o.count == 0 {
		grow += rawSpreadPartBytes
	}
	if len(sc.touched) > 0 && sc.size+grow > rawSpreadRequestBytes-rawSpreadHeadRoom {
		if err := sc.seal(); err != nil {
			return err
		}
		grow = len(k) + len(v) + 24 + rawSpreadPartBytes
	}
	if o.count == 0 {
		sc.touched = append(sc.touched, p)
	}
	o.buf = appendRecord(o.buf, o.count, k, v)
	o.count++
	o.bytes += int64(len(k) + len(v))
	sc.size += grow
	return nil
}

// seal encodes the open request (nothing when it is empty).
func (sc *spreadCutter) seal() error {
	if len(sc.touched) == 0 {
		return nil
	}
	slices.Sort(sc.touched)
	parts := slices.Clone(sc.touched)
	batches := make([][]byte, len(parts))
	rb := rawBatch{partition: parts[0], parts: parts}
	for i, p := range parts {
		o := &sc.parts[p]
		b, err := encodeBatch(o.buf, o.count, sc.s.comp, sc.ts, sc.zenc)
		if err != nil {
			return err
		}
		batches[i] = b
		rb.records += o.count
		sc.bytes += o.bytes
		o.buf, o.count, o.bytes = o.buf[:0], 0, 0
	}
	rb.req = encodeProduce(sc.s, sc.version, parts, batches)
	rb.nameOff = bytes.Index(rb.req, []byte(rawTopicPlaceholder))
	sc.records += rb.records
	sc.out = append(sc.out, rb)
	sc.touched, sc.size = sc.touched[:0], 0
	return nil
}

// buildRawSpreadCell builds a spread cell's requests: records
// first..first+n-1 of shape s cut into multi-partition requests, and a
// warm-up of one record to every partition cut the same way.
func buildRawSpreadCell(s shape, first, n int, version int16) (*rawCell, error) {
	keys, vals := keySet(s.keys), valuePool(s.valueLen)
	zenc, err := zstdFor(s)
	if err != nil {
		return nil, err
	}
	if zenc != nil {
		defer zenc.Close()
	}
	ts := time.Now().UnixMilli()
	sc := &spreadCutter{s: s, version: version, ts: ts, zenc: zenc, parts: make([]spreadOpen, s.partitions)}
	for i := first; i < first+n; i++ {
		k, v := keys[keyIndex(i, s.keys)], vals[i%len(vals)]
		if err := sc.add(kafkaPartition(k, s.partitions), k, v); err != nil {
			return nil, err
		}
	}
	if err := sc.seal(); err != nil {
		return nil, err
	}
	c := &rawCell{batches: sc.out, records: sc.records, bytes: sc.bytes, conns: rawSpreadConns, inFlight: rawSpreadInFlight}
	warm := &spreadCutter{s: s, version: version, ts: ts, zenc: zenc, parts: make([]spreadOpen, s.partitions)}
	for p := range s.partitions {
		if err := warm.add(p, keys[0], vals[0]); err != nil {
			return nil, err
		}
	}
	if err := warm.seal(); err != nil {
		return nil, err
	}
	c.warm = warm.out
	return c, nil
}

// rawConn is one connection of a raw run.
type rawConn struct {
	c    net.Conn
	r    *bufio.Reader
	buf  []byte
	head []byte // send's copy of a request's head
}

func dialRaw(ctx context.Context, addr string) (*rawConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

// send writes b's request with correlation id corr and topic (the
// pre-encoded request holds 0 at bytes 8..11 and rawTopicPlaceholder at
// nameOff; its head up to the end of the name is written from a copy, the
// rest as it is).
func (rc *rawConn) send(b *rawBatch, corr int32, topic string) error {
	end := 12
	if b.nameOff >= 0 {
		if len(topic) != len(rawTopicPlaceholder) {
			return fmt.Errorf("topic %q: raw requests need names of %d bytes", topic, len(rawTopicPlaceholder))
		}
		end = b.nameOff + len(topic)
	}
	rc.head = append(rc.head[:0], b.req[:end]...)
	binary.BigEndian.PutUint32(rc.head[8:], uint32(corr))
	if b.nameOff >= 0 {
		copy(rc.head[b.nameOff:], topic)
	}
	bufs := net.Buffers{rc.head, b.req[end:]}
	_, err := bufs.WriteTo(rc.c)
	return err
}

// recv reads one response and returns its body after the correlation id
// (and, for flexible versions, the header's tagged fields).
func (rc *rawConn) recv(wantCorr int32, flexible bool) ([]byte, error) {
	var sz [4]byte
	if _, err := io.ReadFull(rc.r, sz[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(sz[:]))
	if n < 4 || n > 64<<20 {
		return nil, fmt.Errorf("response of %d bytes", n)
	}
	if cap(rc.buf) < n {
		rc.buf = make([]byte, n)
	}
	b := rc.buf[:n]
	if _, err := io.ReadFull(rc.r, b); err != nil {
		return nil, err
	}
	if got := int32(binary.BigEndian.Uint32(b)); got != wantCorr {
		return nil, fmt.Errorf("correlation id %d, want %d", got, wantCorr)
	}
	b = b[4:]
	if flexible {
		tags, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errors.New("bad response header tags")
		}
		b = b[k:]
		for ; tags > 0; tags-- {
			_, k1 := binary.Uvarint(b)
			if k1 <= 0 {
				return nil, errors.New("bad response header tag")
			}
			size, k2 := binary.Uvarint(b[k1:])
			if k2 <= 0 || uint64(len(b)) < uint64(k1+k2)+size {
				return nil, errors.New("bad response header tag")
			}
			b = b[uint64(k1+k2)+size:]
		}
	}
	return b, nil
}

// produceVersion asks addr for its Produce versions (ApiVersions v0) and
// returns the highest one up to rawProduceMaxVer.
func produceVersion(ctx context.Context, addr string) (int16, error) {
	rc, err := dialRaw(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer rc.c.Close()
	rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 0
	if err := rc.send(&rawBatch{req: kmsg.NewRequestFormatter(kmsg.FormatterClientID("kvbench")).AppendRequest(nil, req, 0), nameOff: -1}, 1, ""); err != nil {
		return 0, err
	}
	b, err := rc.recv(1, false)
	if err != nil {
		return 0, err
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	if err := resp.ReadFrom(b); err != nil {
		return 0, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return 0, err
	}
	for _, k := range resp.ApiKeys {
		if k.ApiKey == 0 {
			if k.MinVersion > rawProduceMaxVer {
				return 0, fmt.Errorf("broker serves Produce v%d-v%d only", k.MinVersion, k.MaxVersion)
			}
			return min(k.MaxVersion, rawProduceMaxVer), nil
		}
	}
	return 0, errors.New("broker does not list Produce")
}

// checkProduce decodes the Produce response to rb and returns the first
// partition error (nil: every batch of the request was acknowledged).
func checkProduce(b []byte, version int16, topic string, rb *rawBatch) error {
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = version
	if err := resp.ReadFrom(b); err != nil {
		return fmt.Errorf("decoding produce response: %w", err)
	}
	if rb.parts != nil {
		n := 0
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return fmt.Errorf("%s[%d]: %w", topic, p.Partition, err)
				}
				n++
			}
		}
		if n != len(rb.parts) {
			return fmt.Errorf("%s: %d partition responses to a request of %d partitions", topic, n, len(rb.parts))
		}
		return nil
	}
	partition := rb.partition
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.Partition != partition {
				continue
			}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("%s[%d]: %w", topic, partition, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%s[%d]: no partition response", topic, partition)
}

// rawProduce sends cell c's requests to the single broker at addr (every
// partition's leader) and times them from the first write to the last
// acknowledgement.
func rawProduce(ctx context.Context, addr string, c *rawCell, version int16, topic string, pids []int) (runStats, error) {
	flexible := version >= 9
	nConns, inFlight := cmp.Or(c.conns, rawConns), cmp.Or(c.inFlight, rawInFlight)
	conns := make([]*rawConn, nConns)
	for i := range conns {
		rc, err := dialRaw(ctx, addr)
		if err != nil {
			return runStats{}, err
		}
		defer rc.c.Close()
		conns[i] = rc
	}
	// Warm-up: one record to every partition, synchronously, retried
	// while the broker does not lead it yet (Kafka's metadata can list a
	// leader before that broker has loaded the partition).
	for i := range c.warm {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := conns[0].send(&c.warm[i], 1, topic)
			var b []byte
			if err == nil {
				b, err = conns[0].recv(1, flexible)
			}
			if err == nil {
				err = checkProduce(b, version, topic, &c.warm[i])
			}
			if err == nil {
				break
			}
			if !kerr.IsRetriable(err) || time.Now().After(deadline) || ctx.Err() != nil {
				return runStats{}, fmt.Errorf("warm-up produce: %w", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	var (
		acked    atomic.Int64
		firstErr atomic.Pointer[error]
		mu       sync.Mutex
		rtt      []float64
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		firstErr.CompareAndSwap(nil, &err)
		for _, rc := range conns {
			rc.c.SetDeadline(time.Now()) // unblock every reader and writer
		}
	}
	stop := context.AfterFunc(ctx, func() { fail(ctx.Err()) })
	defer stop()
	m, cm := meterCPU(pids...), clientMeter()
	start := time.Now()
	for ci, rc := range conns {
		// Connection ci sends batches ci, ci+nConns, …: each partition's
		// batches spread over the connections in the order they were cut.
		type sent struct {
			b  *rawBatch
			at time.Time
		}
		pending := make(chan sent, len(c.batches)/nConns+1)
		slots := make(chan struct{}, inFlight)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(pending)
			corr := int32(2)
			for i := ci; i < len(c.batches); i += nConns {
				slots <- struct{}{} // at most inFlight outstanding
				if firstErr.Load() != nil {
					return
				}
				bt := &c.batches[i]
				pending <- sent{bt, time.Now()}
				if err := rc.send(bt, corr, topic); err != nil {
					fail(fmt.Errorf("write: %w", err))
					return
				}
				corr++
			}
		}()
		go func() {
			defer wg.Done()
			corr := int32(2)
			var local []float64
			for s := range pending {
				b, err := rc.recv(corr, flexible)
				if err == nil {
					err = checkProduce(b, version, topic, s.b)
				}
				if err != nil {
					fail(err)
					for {
						select {
						case <-slots:
						case _, ok := <-pending:
							if !ok {
								return
							}
						}
					}
				}
				local = append(local, float64(time.Since(s.at).Microseconds())/1000)
				acked.Add(int64(s.b.records))
				corr++
				<-slots
			}
			mu.Lock()
			rtt = append(rtt, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	st := runStats{records: acked.Load(), elapsed: time.Since(start), cpu: m.seconds(), clientCPU: cm.seconds()}
	if st.records == int64(c.records) {
		st.bytes = c.bytes
	} else {
		st.bytes = int64(float64(c.bytes) * float64(st.records) / float64(c.records))
	}
	st.reqMs, st.reqs = median(rtt), len(rtt)
	var kb []float64
	for i := range c.batches[:min(len(c.batches), 64)] {
		kb = append(kb, float64(len(c.batches[i].req))/1024)
	}
	st.reqKB = median(kb)
	if p := firstErr.Load(); p != nil {
		return st, fmt.Errorf("raw produce to %s: %w", topic, *p)
	}
	if st.records != int64(c.records) {
		return st, fmt.Errorf("raw produce to %s: %d of %d records acknowledged", topic, st.records, c.records)
	}
	return st, nil
}
