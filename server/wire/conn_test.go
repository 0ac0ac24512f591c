package wire

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

type testReq struct {
	p    Pending
	corr int32
}

func (r *testReq) Pending() *Pending { return &r.p }

// testHandler queues one request per frame (the frame's first 4 bytes are
// its correlation id) and lets the test complete them in any order.
type testHandler struct {
	c     *Conn[*testReq]
	mem   *Memory
	reqs  chan *testReq
	mu    sync.Mutex
	wrote int64
	close []int32
}

func (h *testHandler) MaxFrame() int32 { return 1 << 20 }
func (h *testHandler) Frame(frame []byte, mem int64) bool {
	r := &testReq{corr: int32(binary.BigEndian.Uint32(frame))}
	r.p.Init(r.corr, h.mem, mem)
	h.c.Queue(r)
	h.reqs <- r
	return true
}
func (h *testHandler) ReadStopped(error)                 {}
func (h *testHandler) BeforeWrite(r *testReq, _ *Result) {}
func (h *testHandler) Closing(r *testReq, _ error) {
	h.mu.Lock()
	h.close = append(h.close, r.corr)
	h.mu.Unlock()
}
func (h *testHandler) Wrote(n int64) {
	h.mu.Lock()
	h.wrote += n
	h.mu.Unlock()
}

// readCorr reads one response frame and returns its correlation id.
func readCorr(t *testing.T, nc net.Conn) int32 {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(nc, b); err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	return int32(binary.BigEndian.Uint32(b))
}

// TestConnOrderAndClose: responses leave in request order whatever order
// the requests complete in; a request failing with an error closes the
// connection after the earlier responses, and the requests behind it are
// cancelled with their memory released.
func TestConnOrderAndClose(t *testing.T) {
	server, client := net.Pipe()
	mem := NewMemory(0, nil)
	h := &testHandler{mem: mem, reqs: make(chan *testReq, 10)}
	h.c = NewConn[*testReq](server, 10, mem, time.Minute, nil)
	done := make(chan struct{})
	go func() { defer close(done); h.c.Serve(h); server.Close() }()

	for corr := int32(1); corr <= 4; corr++ {
		frame := binary.BigEndian.AppendUint32(nil, 8)
		frame = binary.BigEndian.AppendUint32(frame, uint32(corr))
		frame = append(frame, 0, 0, 0, 0)
		if _, err := client.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	reqs := make([]*testReq, 4)
	for i := range reqs {
		reqs[i] = <-h.reqs
	}
	resp := func() kmsg.Response { return kmsg.NewPtrHeartbeatResponse() }
	reqs[1].p.Complete(Result{Resp: resp()}, nil) // 2 before 1
	reqs[0].p.Complete(Result{Resp: resp()}, nil)
	for _, want := range []int32{1, 2} {
		if got := readCorr(t, client); got != want {
			t.Fatalf("response %d, want %d", got, want)
		}
	}
	reqs[2].p.Complete(Result{Err: errors.New("bad")}, nil)
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes after the failed request; want the connection closed", n)
	}
	reqs[3].p.Complete(Result{Resp: resp()}, nil) // completes after the close: dropped
	client.Close()
	<-done
	if got := mem.InUse(); got != 0 {
		t.Fatalf("request memory left in use: %d", got)
	}
	if len(h.close) != 1 || h.close[0] != 3 {
		t.Fatalf("closing told of %v", h.close)
	}
	if want := 2 * int64(len(AppendResponse(nil, 1, resp()))); h.wrote != want {
		t.Fatalf("wrote %d bytes, want %d", h.wrote, want)
	}
}
