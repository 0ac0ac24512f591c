package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
)

// FetchReply is a Fetch response as a sequence of pieces: encoded bytes
// and file ranges of record batches. On plaintext listeners the batches go
// from the page cache to the socket with sendfile and never enter user
// space; on TLS listeners they are read into a buffer and encrypted
// (vectorWriter).
type FetchReply struct {
	pieces []fetchPiece
	size   int64 // total bytes after the 4-byte size prefix
	reads  []*engine.ReadResult
	// Resp and TopicBytes (record batch bytes per topic) are for the
	// broker's metrics.
	Resp       *kmsg.FetchResponse
	TopicBytes map[string]int64
}

// fetchPiece is either bytes or a file range.
type fetchPiece struct {
	buf []byte
	fr  engine.FileRange
}

// Release releases the reads the reply holds (after sending it, or when
// it will not be sent).
func (f *FetchReply) Release() {
	for _, r := range f.reads {
		r.Release()
	}
	f.reads = nil
}

// FetchRecords pairs a response partition with the engine read whose
// ranges become its record batches.
type FetchRecords struct {
	Part *kmsg.FetchResponseTopicPartition
	Read *engine.ReadResult
}

const markerLen = 16

// EncodeFetch encodes resp with its header, splicing each partition's read
// in as file ranges. Every partition in recs must have empty (non-nil)
// RecordBatches in resp; EncodeFetch sets each to a random marker, encodes
// with kmsg, then cuts the output at each marker (in encoding order) and
// replaces marker and length prefix with the real length and the ranges.
// On return resp's RecordBatches are restored to empty and the reply owns
// the reads (release them after sending); on error the caller still owns
// them.
func EncodeFetch(corr int32, resp *kmsg.FetchResponse, recs []FetchRecords) (*FetchReply, error) {
	var prefix [8]byte
	rand.Read(prefix[:])
	markers := make([][]byte, len(recs))
	for i, rc := range recs {
		m := make([]byte, markerLen)
		copy(m, prefix[:])
		binary.BigEndian.PutUint64(m[8:], uint64(i))
		markers[i] = m
		rc.Part.RecordBatches = m
	}
	buf := AppendResponseHeader(nil, corr, resp)
	buf = resp.AppendTo(buf)
	for _, rc := range recs {
		rc.Part.RecordBatches = []byte{}
	}

	flexible := resp.IsFlexible()
	out := &FetchReply{}
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
		size := rc.Read.Size
		if flexible {
			piece = binary.AppendUvarint(piece[:len(piece):len(piece)], uint64(size)+1)
		} else {
			piece = binary.BigEndian.AppendUint32(piece[:len(piece):len(piece)], uint32(size))
		}
		out.add(fetchPiece{buf: piece})
		if len(rc.Read.Data) > 0 { // copied by the engine when short of open files
			out.add(fetchPiece{buf: rc.Read.Data})
		}
		for _, fr := range rc.Read.Ranges {
			out.add(fetchPiece{fr: fr})
		}
		from = at + markerLen
	}
	out.add(fetchPiece{buf: buf[from:]})
	out.reads = make([]*engine.ReadResult, len(recs))
	for i, rc := range recs {
		out.reads[i] = rc.Read
	}
	out.Resp = resp
	if len(recs) > 0 {
		sizes := make(map[*kmsg.FetchResponseTopicPartition]int64, len(recs))
		for _, rc := range recs {
			sizes[rc.Part] = rc.Read.Size
		}
		out.TopicBytes = map[string]int64{}
		for ti := range resp.Topics {
			t := &resp.Topics[ti]
			for pi := range t.Partitions {
				if n, ok := sizes[&t.Partitions[pi]]; ok {
					out.TopicBytes[t.Topic] += n
				}
			}
		}
	}
	return out, nil
}

func (f *FetchReply) add(p fetchPiece) {
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

// Size is the reply's length on the wire, its 4-byte size prefix included.
func (f *FetchReply) Size() int64 { return 4 + f.size }

// WriteFetch writes the reply to nc: the size prefix and every piece (its
// correlation id is in the first piece, encoded by EncodeFetch).
func WriteFetch(nc net.Conn, f *FetchReply) error {
	if f.size > int64(^uint32(0)>>1) {
		return fmt.Errorf("fetch response of %d bytes is too large", f.size)
	}
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], uint32(f.size))
	w := newVectorWriter(nc)
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
	return err
}
