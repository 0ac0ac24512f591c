package main

import (
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// The machine's limits, measured by the benchmark process itself in the
// same run as the systems (on the same file system as their data dirs), so
// that "kvlog / machine limit" ratios compare figures taken minutes apart
// rather than on another day. Every limit is one MB/s (10^6 bytes) figure
// except the fsync-per-4KiB rate (operations/s).

type limit struct {
	key, name, unit string
}

var limits = []limit{
	{"write", "sequential write, page cache (1 MiB writes, no sync)", "MB/s"},
	{"write_sync_end", "sequential write + one fdatasync at the end", "MB/s"},
	{"fsync_1m", "1 MiB write + fdatasync, repeated", "MB/s"},
	{"fsync_4k", "4 KiB append + fdatasync, repeated", "ops/s"},
	{"read_cached", "sequential read, page cache (1 MiB reads)", "MB/s"},
	{"read_cold", "sequential read after fadvise(DONTNEED) (1 MiB reads)", "MB/s"},
	{"tcp", "loopback TCP, one stream, 1 MiB writes", "MB/s"},
	{"sendfile", "loopback sendfile of a cached file", "MB/s"},
	{"crc_100", "CRC32C (Castagnoli), 100-byte buffers", "MB/s"},
	{"crc_64k", "CRC32C (Castagnoli), 64 KiB buffers", "MB/s"},
	{"memmove", "memmove (copy), 64 MiB", "MB/s"},
}

// measureMachine runs every limit once and records it under the "machine"
// scenario (system "machine").
func (r *runner) measureMachine() error {
	dir, err := os.MkdirTemp(r.tmp, "machine-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	size := r.cfg.machineBytes
	add := func(key string, v float64) { r.st.add("machine", key, "machine", "value", "", v) }
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*31 + i>>8)
	}

	// Sequential writes.
	writeFile := func(path string, syncEnd bool) (float64, error) {
		f, err := os.Create(path)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		start := time.Now()
		for n := int64(0); n < size; n += int64(len(buf)) {
			if _, err := f.Write(buf); err != nil {
				return 0, err
			}
		}
		if syncEnd {
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				return 0, err
			}
		}
		return float64(size) / 1e6 / time.Since(start).Seconds(), nil
	}
	hot, cold := filepath.Join(dir, "hot"), filepath.Join(dir, "cold")
	v, err := writeFile(hot, false)
	if err != nil {
		return err
	}
	add("write", v)
	if v, err = writeFile(cold, true); err != nil {
		return err
	}
	add("write_sync_end", v)

	// fdatasync after every write.
	syncEach := func(chunk, count int) (float64, error) {
		f, err := os.Create(filepath.Join(dir, "sync"))
		if err != nil {
			return 0, err
		}
		defer f.Close()
		start := time.Now()
		for i := 0; i < count; i++ {
			if _, err := f.Write(buf[:chunk]); err != nil {
				return 0, err
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				return 0, err
			}
		}
		return time.Since(start).Seconds(), nil
	}
	s, err := syncEach(1<<20, 64)
	if err != nil {
		return err
	}
	add("fsync_1m", 64*float64(1<<20)/1e6/s)
	if s, err = syncEach(4096, 500); err != nil {
		return err
	}
	add("fsync_4k", 500/s)

	// Reads.
	readFile := func(path string) (float64, error) {
		f, err := os.Open(path)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		start := time.Now()
		var n int64
		for {
			k, err := f.Read(buf)
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, err
			}
		}
		return float64(n) / 1e6 / time.Since(start).Seconds(), nil
	}
	readFile(hot) // make sure it is all cached
	if v, err = readFile(hot); err != nil {
		return err
	}
	add("read_cached", v)
	dropCache(dir)
	add("cold_resident", residentFraction(cold))
	if v, err = readFile(cold); err != nil {
		return err
	}
	add("read_cold", v)

	// Loopback TCP: plain writes, then sendfile of the cached file.
	tcp := func(send func(c net.Conn) (int64, error)) (float64, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer ln.Close()
		got := make(chan int64, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- 0
				return
			}
			defer c.Close()
			n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 1<<20))
			got <- n
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return 0, err
		}
		start := time.Now()
		if _, err := send(c); err != nil {
			c.Close()
			return 0, err
		}
		c.Close()
		n := <-got
		return float64(n) / 1e6 / time.Since(start).Seconds(), nil
	}
	readFile(hot)
	v, err = tcp(func(c net.Conn) (int64, error) {
		var n int64
		for n < 2*size {
			k, err := c.Write(buf)
			n += int64(k)
			if err != nil {
				return n, err
			}
		}
		return n, nil
	})
	if err != nil {
		return err
	}
	add("tcp", v)
	v, err = tcp(func(c net.Conn) (int64, error) {
		f, err := os.Open(hot)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		return c.(*net.TCPConn).ReadFrom(f) // sendfile(2)
	})
	if err != nil {
		return err
	}
	add("sendfile", v)

	// CRC32C and memmove.
	tab := crc32.MakeTable(crc32.Castagnoli)
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	timeIt := func(bytes int64, fn func()) float64 {
		fn() // warm
		start := time.Now()
		fn()
		return float64(bytes) / 1e6 / time.Since(start).Seconds()
	}
	add("crc_100", timeIt(int64(len(big)), func() {
		for off := 0; off+100 <= len(big); off += 100 {
			_ = crc32.Checksum(big[off:off+100], tab)
		}
	}))
	add("crc_64k", timeIt(4*int64(len(big)), func() {
		for range 4 {
			for off := 0; off < len(big); off += 64 << 10 {
				_ = crc32.Checksum(big[off:off+64<<10], tab)
			}
		}
	}))
	dst := make([]byte, len(big))
	add("memmove", timeIt(4*int64(len(big)), func() {
		for range 4 {
			copy(dst, big)
		}
	}))
	return nil
}

// machineLimit is the median of a limit over the run's measurements.
func (r *runner) machineLimit(key string) float64 {
	return median(r.st.get("machine", key, "machine", "value"))
}
