package wire

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kvlog/kvlog/engine"
)

// vectorWriter writes a response made of byte buffers and file ranges to a
// connection. On TCP it corks the socket for the duration (so a small
// header and the following sendfile share packets) and moves file ranges
// with sendfile(2) at explicit offsets, handling partial writes and EAGAIN
// through the runtime poller.
//
// On TLS (SSL and SASL_SSL listeners) the bytes must be encrypted in user
// space: sendfile cannot be used, and kernel TLS is not available because
// Go's crypto/tls keeps the record layer's keys and sequence numbers to
// itself. So every piece is gathered into one pooled buffer
// (tlsCopyBuffer), file ranges read into it with pread, and each full
// buffer is written through the TLS connection: a few large writes (each
// cut into 16 KiB records) instead of one per piece, the underlying
// socket corked meanwhile. Other connections get a plain copy.
type vectorWriter struct {
	nc  net.Conn
	raw syscall.RawConn // nil: not TCP (nor TLS over TCP)
	tls bool
	buf *[]byte // TLS: pending bytes (pooled)
	n   int     // bytes pending in buf
}

// tlsCopyBuffer is the gathering buffer of fetch responses on TLS.
const tlsCopyBuffer = 256 << 10

var tlsBufPool = sync.Pool{New: func() any { b := make([]byte, tlsCopyBuffer); return &b }}

func newVectorWriter(nc net.Conn) *vectorWriter {
	w := &vectorWriter{nc: nc}
	under := nc
	if tc, ok := nc.(*tls.Conn); ok {
		w.tls = true
		w.buf = tlsBufPool.Get().(*[]byte)
		under = tc.NetConn()
	}
	if tc, ok := under.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			w.raw = raw
			w.cork(1)
		}
	}
	return w
}

func (w *vectorWriter) cork(on int) {
	w.raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, on)
	})
}

// done flushes (TLS) and uncorks; the flush error is the caller's.
func (w *vectorWriter) done() error {
	var err error
	if w.tls {
		err = w.flush()
		tlsBufPool.Put(w.buf)
		w.buf = nil
	}
	if w.raw != nil {
		w.cork(0)
	}
	return err
}

func (w *vectorWriter) write(b []byte) error {
	if !w.tls {
		_, err := w.nc.Write(b)
		return err
	}
	for len(b) > 0 {
		if w.n == len(*w.buf) {
			if err := w.flush(); err != nil {
				return err
			}
		}
		c := copy((*w.buf)[w.n:], b)
		w.n += c
		b = b[c:]
	}
	return nil
}

func (w *vectorWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	_, err := w.nc.Write((*w.buf)[:w.n])
	w.n = 0
	return err
}

// copyRange reads a file range into the TLS buffer, flushing as it fills.
func (w *vectorWriter) copyRange(fr engine.FileRange) error {
	off, remain := fr.Position, fr.Length
	for remain > 0 {
		if w.n == len(*w.buf) {
			if err := w.flush(); err != nil {
				return err
			}
		}
		want := int(min(remain, int64(len(*w.buf)-w.n)))
		got, err := fr.File.ReadAt((*w.buf)[w.n:w.n+want], off)
		w.n += got
		off += int64(got)
		remain -= int64(got)
		if got < want {
			if err == nil || errors.Is(err, io.EOF) {
				err = errShortFile
			}
			return fmt.Errorf("read %s [%d,+%d): %w", fr.File.Name(), fr.Position, fr.Length, err)
		}
	}
	return nil
}

// errShortFile means a file range extended past the end of its file.
var errShortFile = errors.New("sendfile: file shorter than the range")

func (w *vectorWriter) sendFile(fr engine.FileRange) error {
	if w.tls {
		return w.copyRange(fr)
	}
	if w.raw == nil {
		_, err := io.Copy(w.nc, io.NewSectionReader(fr.File, fr.Position, fr.Length))
		return err
	}
	src := int(fr.File.Fd())
	off := fr.Position
	remain := fr.Length
	var serr error
	err := w.raw.Write(func(fd uintptr) bool {
		for remain > 0 {
			n, err := unix.Sendfile(int(fd), src, &off, int(min(remain, 1<<30)))
			if n > 0 {
				remain -= int64(n)
			}
			switch {
			case err == unix.EAGAIN:
				return false // wait until writable
			case err == unix.EINTR:
				continue
			case err != nil:
				serr = err
				return true
			case n == 0:
				serr = errShortFile
				return true
			}
		}
		return true
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("sendfile %s [%d,+%d): %w", fr.File.Name(), fr.Position, fr.Length, err)
	}
	return nil
}
