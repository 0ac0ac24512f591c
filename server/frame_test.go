package server

import (
	"bytes"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func servedByRegistry(key int16) (versionRange, bool) {
	h, ok := handlers[key]
	if !ok {
		return versionRange{}, false
	}
	return h.versions, true
}

// FuzzParseRequest fuzzes the frame parser: hand-parsed request header
// (v0/v1/v2 with tags) plus kmsg body decoding at the header's version.
//
// Invariants: never panics; on success the request's key and version are
// the header's and inside the served range, and re-encoding then decoding
// the request is stable (same bytes); on errUnsupportedVersion and
// errBadBody the header's key and version are the frame's.
func FuzzParseRequest(f *testing.F) {
	for _, req := range []kmsg.Request{
		func() kmsg.Request { r := kmsg.NewPtrApiVersionsRequest(); r.Version = 3; return r }(),
		func() kmsg.Request { r := kmsg.NewPtrMetadataRequest(); r.Version = 0; return r }(),
		func() kmsg.Request {
			r := kmsg.NewPtrMetadataRequest()
			r.Version = 12
			t := kmsg.NewMetadataRequestTopic()
			n := "topic"
			t.Topic = &n
			r.Topics = append(r.Topics, t)
			return r
		}(),
		func() kmsg.Request {
			r := kmsg.NewPtrProduceRequest()
			r.Version = 9
			t := kmsg.NewProduceRequestTopic()
			t.Topic = "t"
			p := kmsg.NewProduceRequestTopicPartition()
			p.Records = []byte("not really a batch")
			t.Partitions = append(t.Partitions, p)
			r.Topics = append(r.Topics, t)
			return r
		}(),
		func() kmsg.Request { r := kmsg.NewPtrFetchRequest(); r.Version = 12; return r }(),
		func() kmsg.Request { r := kmsg.NewPtrCreateTopicsRequest(); r.Version = 7; return r }(),
	} {
		f.Add(frame(req, 7, "client")[4:])
	}
	f.Add([]byte{0, 18, 0, 99, 0, 0, 0, 1, 0xff, 0xff})
	f.Add([]byte{0, 3, 0, 9, 0, 0, 0, 1, 0, 1, 'x', 5, 1, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		hdr, req, err := parseRequest(b, servedByRegistry)
		if err != nil {
			if errors.Is(err, errUnsupportedVersion) || errors.Is(err, errBadBody) {
				if len(in) < 4 || hdr.key != int16(in[0])<<8|int16(in[1]) || hdr.version != int16(in[2])<<8|int16(in[3]) {
					t.Fatalf("header not filled in: %+v", hdr)
				}
			}
			return
		}
		if req.Key() != hdr.key || req.GetVersion() != hdr.version {
			t.Fatalf("request %d v%d, header %+v", req.Key(), req.GetVersion(), hdr)
		}
		vr, _ := servedByRegistry(hdr.key)
		if hdr.version < vr.min || hdr.version > vr.max {
			t.Fatalf("version %d outside %v", hdr.version, vr)
		}
		enc := req.AppendTo(nil)
		again := kmsg.RequestForKey(hdr.key)
		again.SetVersion(hdr.version)
		if err := again.ReadFrom(enc); err != nil {
			t.Fatalf("re-decoding the re-encoded request: %v", err)
		}
		if enc2 := again.AppendTo(nil); !bytes.Equal(enc, enc2) {
			t.Fatal("re-encoding is not stable")
		}
	})
}

func TestParseRequestHeader(t *testing.T) {
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 9 // flexible: header v2 with a tag section
	b := frame(req, 42, "my-client")[4:]
	// Add one tagged field to the header's tag section.
	i := 10 + len("my-client")
	tagged := append(append(append([]byte{}, b[:i]...), 1, 5, 2, 'h', 'i'), b[i+1:]...)
	for _, fr := range [][]byte{b, tagged} {
		hdr, got, err := parseRequest(fr, servedByRegistry)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.corr != 42 || hdr.clientID != "my-client" || hdr.key != 3 || hdr.version != 9 {
			t.Fatalf("header %+v", hdr)
		}
		if _, ok := got.(*kmsg.MetadataRequest); !ok {
			t.Fatalf("request %T", got)
		}
	}
	// Null client id.
	nb := append([]byte{0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff}, kmsg.NewPtrApiVersionsRequest().AppendTo(nil)...)
	if hdr, _, err := parseRequest(nb, servedByRegistry); err != nil || hdr.clientID != "" {
		t.Fatalf("null client id: %+v %v", hdr, err)
	}
}

func TestReadFrameBody(t *testing.T) {
	for _, n := range []int{0, 10, smallFrame, smallFrame + 1, minPooledFrame, 1 << 20, 3<<20 + 17} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i * 7)
		}
		reserved := false
		got, err := readFrameBody(bytes.NewReader(src), n, func() error { reserved = true; return nil })
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("n=%d: err %v, equal %v", n, err, bytes.Equal(got, src))
		}
		if reserved != (n > smallFrame) {
			t.Fatalf("n=%d: reserved %v", n, reserved)
		}
	}
	// A size prefix larger than what arrives fails without allocating it all.
	if _, err := readFrameBody(bytes.NewReader(make([]byte, 100)), 50<<20, nil); err == nil {
		t.Fatal("short frame accepted")
	}
	// The buffer follows what arrived: a 16 MiB frame of which 100 KiB
	// arrived has a buffer of at most 4 × 100 KiB (rounded to a pool
	// class), not 16 MiB.
	r := &capReader{r: bytes.NewReader(make([]byte, 100<<10))}
	if _, err := readFrameBody(r, 16<<20, nil); err == nil {
		t.Fatal("short frame accepted")
	}
	if r.maxBuf > 512<<10 {
		t.Fatalf("reading 100 KiB of a 16 MiB frame used a %d-byte buffer", r.maxBuf)
	}
}

func TestFramePoolClasses(t *testing.T) {
	for _, c := range []struct{ n, class int }{
		{0, -1}, {minPooledFrame - 1, -1}, {minPooledFrame, 0}, {minPooledFrame + 1, 1},
		{2 * minPooledFrame, 1}, {1 << 20, 4}, {1<<20 + 1, 5}, {16 << 20, 8}, {16<<20 + 1, -1},
	} {
		if got := frameClass(c.n); got != c.class {
			t.Fatalf("frameClass(%d) = %d, want %d", c.n, got, c.class)
		}
		b := getFrame(c.n)
		if len(b) != c.n || (c.class >= 0 && cap(b) != minPooledFrame<<c.class) {
			t.Fatalf("getFrame(%d): len %d cap %d", c.n, len(b), cap(b))
		}
		putFrame(b)
	}
	// A buffer whose capacity is not a class size is never pooled.
	putFrame(make([]byte, 3*minPooledFrame))
	if b := getFrame(3 * minPooledFrame); cap(b) != 4*minPooledFrame {
		t.Fatalf("odd-sized buffer came back from the pool: cap %d", cap(b))
	}
}

// capReader records the largest buffer it was asked to fill.
type capReader struct {
	r      *bytes.Reader
	maxBuf int
}

func (c *capReader) Read(p []byte) (int, error) {
	c.maxBuf = max(c.maxBuf, cap(p))
	return c.r.Read(p)
}
