package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kvlog/kvlog/engine"
)

// vectorWriter writes a response made of byte buffers and file ranges to a
// connection. On TCP it corks the socket for the duration (so a small
// header and the following sendfile share packets) and moves file ranges
// with sendfile(2) at explicit offsets, handling partial writes and EAGAIN
// through the runtime poller. Other connections get a plain copy.
type vectorWriter struct {
	nc  net.Conn
	raw syscall.RawConn // nil: not TCP
}

func newVectorWriter(nc net.Conn) *vectorWriter {
	w := &vectorWriter{nc: nc}
	if tc, ok := nc.(*net.TCPConn); ok {
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

func (w *vectorWriter) done() {
	if w.raw != nil {
		w.cork(0)
	}
}

func (w *vectorWriter) write(b []byte) error {
	_, err := w.nc.Write(b)
	return err
}

// errShortFile means a file range extended past the end of its file.
var errShortFile = errors.New("sendfile: file shorter than the range")

func (w *vectorWriter) sendFile(fr engine.FileRange) error {
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
