package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
)

// fetchCase is one partition of a test response: its record bytes come
// from file ranges, from engine-copied Data, or are absent.
type fetchCase struct {
	ranges [][2]int64 // position, length in the test file
	data   int        // bytes of Data (engine copy)
}

// buildFetch returns a response over topics×partitions with the cases
// (cycled), the FetchRecords for EncodeFetch, and the frame kmsg would
// write with the record bytes inline (what the client must receive).
func buildFetch(t *testing.T, version int16, f *os.File, content []byte, cases []fetchCase, topics, parts int) (*kmsg.FetchResponse, []FetchRecords, []byte) {
	t.Helper()
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = version
	want := kmsg.NewPtrFetchResponse()
	want.Version = version
	resp.Topics = make([]kmsg.FetchResponseTopic, topics)
	want.Topics = make([]kmsg.FetchResponseTopic, topics)
	var recs []FetchRecords
	n := 0
	for ti := range topics {
		for _, r := range []*kmsg.FetchResponse{resp, want} {
			r.Topics[ti] = kmsg.NewFetchResponseTopic()
			r.Topics[ti].Topic = "topic-" + string(rune('a'+ti))
			r.Topics[ti].Partitions = make([]kmsg.FetchResponseTopicPartition, parts)
		}
		for pi := range parts {
			c := cases[n%len(cases)]
			n++
			for _, r := range []*kmsg.FetchResponse{resp, want} {
				p := &r.Topics[ti].Partitions[pi]
				*p = kmsg.NewFetchResponseTopicPartition()
				p.Partition = int32(pi)
				p.HighWatermark = int64(1000 + n)
				p.LastStableOffset = int64(1000 + n)
				p.LogStartOffset = int64(n)
				p.RecordBatches = []byte{}
				p.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
				p.PreferredReadReplica = -1
			}
			if len(c.ranges) == 0 && c.data == 0 {
				continue
			}
			read := &engine.ReadResult{}
			var inline []byte
			if c.data > 0 {
				read.Data = bytes.Repeat([]byte{byte(n)}, c.data)
				inline = append(inline, read.Data...)
			}
			for _, rg := range c.ranges {
				read.Ranges = append(read.Ranges, engine.FileRange{File: f, Position: rg[0], Length: rg[1]})
				inline = append(inline, content[rg[0]:rg[0]+rg[1]]...)
			}
			read.Size = int64(len(inline))
			want.Topics[ti].Partitions[pi].RecordBatches = inline
			recs = append(recs, FetchRecords{Part: &resp.Topics[ti].Partitions[pi], Read: read})
		}
	}
	return resp, recs, AppendResponse(nil, 77, want)
}

// TestWriteFetchBytes checks that every way WriteFetch sends a reply (one
// buffer, writev of engine copies, small replies copied into one buffer,
// sendfile between corked writes) puts the bytes kmsg would encode with
// the records inline on the wire, over TCP and over a non-TCP connection,
// flexible (v12) and not (v11).
func TestWriteFetchBytes(t *testing.T) {
	content := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range content {
		content[i] = byte(rng.Uint32())
	}
	path := filepath.Join(t.TempDir(), "seg.log")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	small := fetchCase{ranges: [][2]int64{{100, 300}}}
	large := fetchCase{ranges: [][2]int64{{4096, 200 << 10}}}
	twoRanges := fetchCase{ranges: [][2]int64{{0, 10}, {50000, 3 << 10}}}
	copied := fetchCase{data: 500}
	empty := fetchCase{}
	shapes := []struct {
		name         string
		cases        []fetchCase
		topics, part int
	}{
		{"no data", []fetchCase{empty}, 2, 3},
		{"engine copies only", []fetchCase{copied, empty}, 2, 2},
		{"small ranges", []fetchCase{small, empty, twoRanges}, 2, 3},
		{"exactly smallCopy", []fetchCase{{ranges: [][2]int64{{7, smallCopy}}}}, 1, 1},
		{"just over smallCopy", []fetchCase{{ranges: [][2]int64{{7, smallCopy + 1}}}}, 1, 1},
		{"large range", []fetchCase{large}, 1, 1},
		{"mixed", []fetchCase{small, large, copied, empty, twoRanges}, 3, 4},
	}
	conns := map[string]func(t *testing.T) (net.Conn, net.Conn){
		"tcp": func(t *testing.T) (net.Conn, net.Conn) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			return s, c
		},
		"pipe": func(*testing.T) (net.Conn, net.Conn) { return net.Pipe() },
	}
	for cname, mk := range conns {
		for _, version := range []int16{11, 12} {
			for _, sh := range shapes {
				t.Run(fmt.Sprintf("%s/v%d/%s", cname, version, sh.name), func(t *testing.T) {
					resp, recs, want := buildFetch(t, version, f, content, sh.cases, sh.topics, sh.part)
					reply, err := EncodeFetch(77, resp, recs)
					if err != nil {
						t.Fatal(err)
					}
					defer reply.Release()
					if reply.Size() != int64(len(want)) {
						t.Fatalf("Size() = %d, want %d", reply.Size(), len(want))
					}
					srv, cli := mk(t)
					defer srv.Close()
					defer cli.Close()
					// A reply shorter than its size prefix must fail the
					// test, not hang it.
					cli.SetReadDeadline(time.Now().Add(5 * time.Second))
					got := make(chan []byte, 1)
					go func() {
						var size [4]byte
						if _, err := io.ReadFull(cli, size[:]); err != nil {
							got <- nil
							return
						}
						b := make([]byte, 4+binary.BigEndian.Uint32(size[:]))
						copy(b, size[:])
						if _, err := io.ReadFull(cli, b[4:]); err != nil {
							got <- nil
							return
						}
						got <- b
					}()
					if err := WriteFetch(srv, reply); err != nil {
						t.Fatal(err)
					}
					if b := <-got; !bytes.Equal(b, want) {
						t.Fatalf("wire bytes differ from kmsg's encoding: got %d bytes, want %d", len(b), len(want))
					}
				})
			}
		}
	}
}

// BenchmarkEncodeFetchEmpty encodes the answer to a consumer at the end of
// one partition: no record data (the most frequent fetch of a tailing
// consumer).
func BenchmarkEncodeFetchEmpty(b *testing.B) {
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 12
	t := kmsg.NewFetchResponseTopic()
	t.Topic = "orders"
	p := kmsg.NewFetchResponseTopicPartition()
	p.RecordBatches = []byte{}
	p.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
	t.Partitions = append(t.Partitions, p)
	resp.Topics = append(resp.Topics, t)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeFetch(1, resp, nil); err != nil {
			b.Fatal(err)
		}
	}
}
