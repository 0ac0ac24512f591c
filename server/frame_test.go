package server

import (
	"bytes"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/wire"
)

func servedByRegistry(key int16) (wire.VersionRange, bool) {
	h, ok := handlers[key]
	if !ok {
		return wire.VersionRange{}, false
	}
	return h.versions, true
}

// FuzzParseRequest fuzzes the frame parser: hand-parsed request header
// (v0/v1/v2 with tags) plus kmsg body decoding at the header's version.
//
// Invariants: never panics; on success the request's key and version are
// the header's and inside the served range, and re-encoding then decoding
// the request is stable (same bytes); on wire.ErrUnsupportedVersion and
// wire.ErrBadBody the header's key and version are the frame's.
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
		hdr, req, err := wire.ParseRequest(b, servedByRegistry)
		if err != nil {
			if errors.Is(err, wire.ErrUnsupportedVersion) || errors.Is(err, wire.ErrBadBody) {
				if len(in) < 4 || hdr.Key != int16(in[0])<<8|int16(in[1]) || hdr.Version != int16(in[2])<<8|int16(in[3]) {
					t.Fatalf("header not filled in: %+v", hdr)
				}
			}
			return
		}
		if req.Key() != hdr.Key || req.GetVersion() != hdr.Version {
			t.Fatalf("request %d v%d, header %+v", req.Key(), req.GetVersion(), hdr)
		}
		vr, _ := servedByRegistry(hdr.Key)
		if hdr.Version < vr.Min || hdr.Version > vr.Max {
			t.Fatalf("version %d outside %v", hdr.Version, vr)
		}
		enc := req.AppendTo(nil)
		again := kmsg.RequestForKey(hdr.Key)
		again.SetVersion(hdr.Version)
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
		hdr, got, err := wire.ParseRequest(fr, servedByRegistry)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Corr != 42 || hdr.ClientID != "my-client" || hdr.Key != 3 || hdr.Version != 9 {
			t.Fatalf("header %+v", hdr)
		}
		if _, ok := got.(*kmsg.MetadataRequest); !ok {
			t.Fatalf("request %T", got)
		}
	}
	// Null client id.
	nb := append([]byte{0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff}, kmsg.NewPtrApiVersionsRequest().AppendTo(nil)...)
	if hdr, _, err := wire.ParseRequest(nb, servedByRegistry); err != nil || hdr.ClientID != "" {
		t.Fatalf("null client id: %+v %v", hdr, err)
	}
}
