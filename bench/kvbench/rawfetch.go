package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The batch-counting consumer (-consumer raw): the read side's counterpart
// of the pre-encoded produce generator. franz-go's consumer decodes every
// record into a kgo.Record and checks every batch's CRC on the benchmark's
// own two cores; reading from kvlog it was busy several times longer than
// kvlogd, so both brokers were read at the client's rate. This consumer
// sends Fetch requests (v11, the same sizes as the franz-go consumer: 64 MiB
// per response, 16 MiB per partition, 500 ms max wait) on one connection,
// one at a time like a consumer's fetch loop, and walks only the record
// batch headers of each response: a batch's record count and last offset
// delta give the records read and the next fetch offset, without decoding a
// record. Every batch is read in full from the socket. The payload bytes of
// a run are its records times the cell's record size (every record of a
// consume topic has the same key and value lengths).

const rawFetchVersion = 11 // kvlogd serves Fetch v4-v12, Kafka 4 v4-v17; v11 is the last before flexible versions

// rawConsume reads topic's partitions from offset 0 to ends (their end
// offsets) from the single broker at addr and times it.
func rawConsume(ctx context.Context, addr, topic string, ends map[int32]int64, recordBytes int, pids []int) (runStats, error) {
	rc, err := dialRaw(ctx, addr)
	if err != nil {
		return runStats{}, err
	}
	defer rc.c.Close()
	stop := context.AfterFunc(ctx, func() { rc.c.SetDeadline(time.Now()) })
	defer stop()
	next := map[int32]int64{}
	for p, end := range ends {
		if end > 0 {
			next[p] = 0
		}
	}
	var st runStats
	m, cm := meterCPU(pids...), clientMeter()
	start := time.Now()
	for corr := int32(1); len(next) > 0; corr++ {
		req := kmsg.NewPtrFetchRequest()
		req.Version = rawFetchVersion
		req.ReplicaID = -1
		req.MaxWaitMillis = 500
		req.MinBytes = 1
		req.MaxBytes = fetchMaxBytes
		req.SessionEpoch = -1 // no fetch session
		t := kmsg.NewFetchRequestTopic()
		t.Topic = topic
		for p, off := range next {
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.Partition = p
			fp.FetchOffset = off
			fp.PartitionMaxBytes = fetchMaxPartBytes
			t.Partitions = append(t.Partitions, fp)
		}
		req.Topics = append(req.Topics, t)
		b := &rawBatch{req: kmsg.NewRequestFormatter(kmsg.FormatterClientID("kvbench")).AppendRequest(nil, req, 0), nameOff: -1}
		if err := rc.send(b, corr, ""); err != nil {
			return st, fmt.Errorf("fetch %s: %w", topic, ctxErr(ctx, err))
		}
		body, err := rc.recv(corr, false)
		if err != nil {
			return st, fmt.Errorf("fetch %s: %w", topic, ctxErr(ctx, err))
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = rawFetchVersion
		if err := resp.ReadFrom(body); err != nil {
			return st, fmt.Errorf("fetch %s: decoding the response: %w", topic, err)
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return st, fmt.Errorf("fetch %s: %w", topic, err)
		}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				off, ok := next[rp.Partition]
				if !ok {
					continue
				}
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					return st, fmt.Errorf("fetch %s[%d] at offset %d: %w", topic, rp.Partition, off, err)
				}
				n, after, err := countBatches(rp.RecordBatches, off, ends[rp.Partition])
				if err != nil {
					return st, fmt.Errorf("fetch %s[%d] at offset %d: %w", topic, rp.Partition, off, err)
				}
				st.records += n
				if after >= ends[rp.Partition] {
					delete(next, rp.Partition)
				} else {
					next[rp.Partition] = after
				}
			}
		}
	}
	st.elapsed = time.Since(start)
	st.cpu = m.seconds()
	st.clientCPU = cm.seconds()
	st.bytes = st.records * int64(recordBytes)
	return st, nil
}

// countBatches walks the v2 record batch headers of a fetched partition
// from offset from: the records of the whole batches that end at or after
// from and start before end, and the offset after the last whole batch (a
// response may end in a partial batch, which the next fetch reads again).
func countBatches(b []byte, from, end int64) (records, next int64, err error) {
	next = from
	for len(b) >= 61 {
		base := int64(binary.BigEndian.Uint64(b))
		size := 12 + int(binary.BigEndian.Uint32(b[8:]))
		if size < 61 {
			return records, next, fmt.Errorf("batch at offset %d of %d bytes", base, size)
		}
		if size > len(b) {
			break // partial
		}
		if magic := b[16]; magic != 2 {
			return records, next, fmt.Errorf("batch at offset %d: magic %d", base, magic)
		}
		last := base + int64(binary.BigEndian.Uint32(b[23:]))
		if last >= from && base < end {
			records += int64(binary.BigEndian.Uint32(b[57:]))
		}
		next = max(next, last+1)
		b = b[size:]
	}
	return records, next, nil
}

// ctxErr prefers the context's error to the deadline error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), err)
	}
	return err
}
