package wire

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
)

// FetchReply is a Fetch response as a sequence of pieces: encoded bytes
// and file ranges of record batches. On plaintext listeners the batches go
// from the page cache to the socket with sendfile and never enter user
// space; on TLS listeners they are read into a buffer and encrypted
// (vectorWriter).
type FetchReply struct {
	pieces []fetchPiece // the first starts with the frame's size prefix
	size   int64        // total bytes, the size prefix included
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

// EncodeFetch encodes resp as a whole frame (size prefix, header for
// corr, body), splicing each partition's read in as file ranges. Every
// partition in recs must have empty (non-nil) RecordBatches in resp;
// EncodeFetch sets each to a random marker, encodes with kmsg, then cuts
// the output at each marker (in encoding order) and replaces marker and
// length prefix with the real length and the ranges. On return resp's
// RecordBatches are restored to empty and the reply owns the reads
// (release them after sending); on error the caller still owns them.
func EncodeFetch(corr int32, resp *kmsg.FetchResponse, recs []FetchRecords) (*FetchReply, error) {
	out := &FetchReply{Resp: resp}
	buf := make([]byte, 0, fetchSizeHint(resp))
	if len(recs) == 0 {
		// Nothing to splice: the frame is one buffer.
		out.add(fetchPiece{buf: AppendResponse(buf, corr, resp)})
		return out, nil
	}
	var prefix [8]byte
	rand.Read(prefix[:])
	all := make([]byte, markerLen*len(recs))
	for i, rc := range recs {
		m := all[i*markerLen : (i+1)*markerLen : (i+1)*markerLen]
		copy(m, prefix[:])
		binary.BigEndian.PutUint64(m[8:], uint64(i))
		rc.Part.RecordBatches = m
	}
	buf = AppendResponseHeader(buf, corr, resp)
	buf = resp.AppendTo(buf)
	for _, rc := range recs {
		rc.Part.RecordBatches = []byte{}
	}

	flexible := resp.IsFlexible()
	from := 0
	for i, rc := range recs {
		at := bytes.Index(buf[from:], all[i*markerLen:(i+1)*markerLen])
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
	// The first piece starts with the frame's size prefix.
	binary.BigEndian.PutUint32(out.pieces[0].buf, uint32(out.size-4))
	out.reads = make([]*engine.ReadResult, len(recs))
	for i, rc := range recs {
		out.reads[i] = rc.Read
	}
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
	return out, nil
}

// fetchSizeHint is a capacity for resp's encoding without record data:
// enough for the fixed fields of each topic and partition, so the buffer
// is allocated once.
func fetchSizeHint(resp *kmsg.FetchResponse) int {
	n := 32
	for i := range resp.Topics {
		t := &resp.Topics[i]
		n += 24 + len(t.Topic) + 64*len(t.Partitions)
		for j := range t.Partitions {
			n += 16 * len(t.Partitions[j].AbortedTransactions)
		}
	}
	return n
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
func (f *FetchReply) Size() int64 { return f.size }

// WriteFetch writes the reply to nc: every piece in order (the first
// carries the size prefix and the correlation id, encoded by EncodeFetch).
//
// A reply without file ranges is written with one write (writev when the
// engine copied several partitions' data). A reply whose file ranges are
// small in all (at most smallCopy bytes) is read into one buffer and
// written with one write too: two or three syscalls instead of corking,
// writing the header, sendfile, writing the tail and uncorking, which
// costs more than copying a few kilobytes (a consumer at the tail of a
// partition fetches a batch or two at a time). Larger replies go through
// vectorWriter: sendfile between the encoded pieces, corked.
func WriteFetch(nc net.Conn, f *FetchReply) error {
	if f.size-4 > int64(^uint32(0)>>1) {
		return fmt.Errorf("fetch response of %d bytes is too large", f.size-4)
	}
	var fileBytes int64
	for _, p := range f.pieces {
		if p.buf == nil {
			fileBytes += p.fr.Length
		}
	}
	_, isTLS := nc.(*tls.Conn)
	switch {
	case len(f.pieces) == 1 && fileBytes == 0:
		_, err := nc.Write(f.pieces[0].buf)
		return err
	case !isTLS && fileBytes == 0:
		bufs := make(net.Buffers, len(f.pieces))
		for i, p := range f.pieces {
			bufs[i] = p.buf
		}
		_, err := bufs.WriteTo(nc)
		return err
	case fileBytes <= smallCopy:
		return writeCopied(nc, f)
	}
	w := newVectorWriter(nc)
	var err error
	for _, p := range f.pieces {
		if p.buf != nil {
			err = w.write(p.buf)
		} else {
			err = w.sendFile(p.fr)
		}
		if err != nil {
			break
		}
	}
	if derr := w.done(); err == nil {
		err = derr
	}
	return err
}

// smallCopy is the most file bytes a fetch reply copies into one buffer
// instead of sending them with sendfile.
const smallCopy = 16 << 10

// smallBufPool holds the buffers of copied replies (a little over
// smallCopy: the encoded pieces around the file bytes).
var smallBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2*smallCopy); return &b }}

// writeCopied writes f as one buffer, its file ranges read in with pread.
func writeCopied(nc net.Conn, f *FetchReply) error {
	bp := smallBufPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 4*smallCopy {
			smallBufPool.Put(bp)
		}
	}()
	b := slices.Grow((*bp)[:0], int(f.size))
	for _, p := range f.pieces {
		if p.buf != nil {
			b = append(b, p.buf...)
			continue
		}
		n := len(b)
		b = b[:n+int(p.fr.Length)]
		got, err := p.fr.File.ReadAt(b[n:], p.fr.Position)
		if got < int(p.fr.Length) {
			if err == nil || errors.Is(err, io.EOF) {
				err = errShortFile
			}
			return fmt.Errorf("read %s [%d,+%d): %w", p.fr.File.Name(), p.fr.Position, p.fr.Length, err)
		}
	}
	*bp = b
	_, err := nc.Write(b)
	return err
}
