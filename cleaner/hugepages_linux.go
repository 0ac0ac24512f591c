package cleaner

import "golang.org/x/sys/unix"

// hugePages asks the kernel to back buf with transparent huge pages (where
// THP is enabled in madvise mode, as on most distributions). Probes of a
// large offset map land anywhere in it: with 4 KiB pages nearly every one
// also misses the TLB. buf must not have been touched yet (a fresh large
// allocation is not: its pages are faulted in, huge, as the map fills).
func hugePages(buf []byte) {
	if len(buf) >= 4<<20 {
		_ = unix.Madvise(buf, unix.MADV_HUGEPAGE)
	}
}
