package server

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
)

// fetchReply is a Fetch response as a sequence of pieces: encoded bytes
// and file ranges of record batches. On plaintext listeners the batches go
// from the page cache to the socket with sendfile and never enter user
// space; on TLS listeners they are read into a buffer and encrypted
// (vectorWriter).
type fetchReply struct {
	pieces []fetchPiece
	size   int64 // total bytes after the 4-byte size prefix
	reads  []*engine.ReadResult
	// resp and topicBytes (record batch bytes per topic) are for the
	// metrics (metrics.observe).
	resp       *kmsg.FetchResponse
	topicBytes map[string]int64
}

// fetchPiece is either bytes or a file range.
type fetchPiece struct {
	buf []byte
	fr  engine.FileRange
}

func (f *fetchReply) release() {
	for _, r := range f.reads {
		r.Release()
	}
	f.reads = nil
}

// fetchRecords pairs a response partition with the engine read whose
// ranges become its record batches.
type fetchRecords struct {
	part *kmsg.FetchResponseTopicPartition
	read *engine.ReadResult
}

const markerLen = 16

// encodeFetch encodes resp with its header, splicing each partition's read
// in as file ranges. Every partition in recs must have empty (non-nil)
// RecordBatches in resp; encodeFetch sets each to a random marker, encodes
// with kmsg, then cuts the output at each marker (in encoding order) and
// replaces marker and length prefix with the real length and the ranges.
// On return resp's RecordBatches are restored to empty and the reply owns
// the reads (release them after sending); on error the caller still owns
// them.
func encodeFetch(corr int32, resp *kmsg.FetchResponse, recs []fetchRecords) (*fetchReply, error) {
	var prefix [8]byte
	rand.Read(prefix[:])
	markers := make([][]byte, len(recs))
	for i, rc := range recs {
		m := make([]byte, markerLen)
		copy(m, prefix[:])
		binary.BigEndian.PutUint64(m[8:], uint64(i))
		markers[i] = m
		rc.part.RecordBatches = m
	}
	buf := appendResponseHeader(nil, corr, resp)
	buf = resp.AppendTo(buf)
	for _, rc := range recs {
		rc.part.RecordBatches = []byte{}
	}

	flexible := resp.IsFlexible()
	out := &fetchReply{}
	from := 4 // the size prefix is written separately
	for i, rc := range recs {
		at := bytes.Index(buf[from:], markers[i])
		if at < 0 {
			return nil, fmt.Errorf("fetch encoding: marker %d not found", i)
		}
		at += from
		// Check and strip the length prefix kmsg wrote for the marker.
		var plen int
		if flexible {
			plen = 1
			if at < from+1 || buf[at-1] != markerLen+1 { // compact bytes: uvarint(len+1)
				return nil, errors.New("fetch encoding: unexpected compact length before marker")
			}
		} else {
			plen = 4
			if at < from+4 || binary.BigEndian.Uint32(buf[at-4:]) != markerLen {
				return nil, errors.New("fetch encoding: unexpected length before marker")
			}
		}
		piece := buf[from : at-plen]
		size := rc.read.Size
		if flexible {
			piece = binary.AppendUvarint(piece[:len(piece):len(piece)], uint64(size)+1)
		} else {
			piece = binary.BigEndian.AppendUint32(piece[:len(piece):len(piece)], uint32(size))
		}
		out.add(fetchPiece{buf: piece})
		if len(rc.read.Data) > 0 { // copied by the engine when short of open files
			out.add(fetchPiece{buf: rc.read.Data})
		}
		for _, fr := range rc.read.Ranges {
			out.add(fetchPiece{fr: fr})
		}
		from = at + markerLen
	}
	out.add(fetchPiece{buf: buf[from:]})
	out.reads = make([]*engine.ReadResult, len(recs))
	for i, rc := range recs {
		out.reads[i] = rc.read
	}
	out.resp = resp
	if len(recs) > 0 {
		sizes := make(map[*kmsg.FetchResponseTopicPartition]int64, len(recs))
		for _, rc := range recs {
			sizes[rc.part] = rc.read.Size
		}
		out.topicBytes = map[string]int64{}
		for ti := range resp.Topics {
			t := &resp.Topics[ti]
			for pi := range t.Partitions {
				if n, ok := sizes[&t.Partitions[pi]]; ok {
					out.topicBytes[t.Topic] += n
				}
			}
		}
	}
	return out, nil
}

func (f *fetchReply) add(p fetchPiece) {
	if p.buf != nil {
		if len(p.buf) == 0 {
			return
		}
		f.size += int64(len(p.buf))
	} else {
		if p.fr.Length == 0 {
			return
		}
		f.size += p.fr.Length
	}
	f.pieces = append(f.pieces, p)
}

// writeFetch writes the size prefix and every piece.
func (c *conn) writeFetch(corr int32, f *fetchReply) error {
	if f.size > int64(^uint32(0)>>1) {
		return fmt.Errorf("fetch response of %d bytes is too large", f.size)
	}
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], uint32(f.size))
	w := newVectorWriter(c.nc)
	err := w.write(size[:])
	for _, p := range f.pieces {
		if err != nil {
			break
		}
		if p.buf != nil {
			err = w.write(p.buf)
		} else {
			err = w.sendFile(p.fr)
		}
	}
	if derr := w.done(); err == nil {
		err = derr
	}
	if err != nil {
		return err
	}
	c.s.metrics.bytesOut.Add(float64(4 + f.size))
	return nil
}
