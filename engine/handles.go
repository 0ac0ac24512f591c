package engine

import (
	"github.com/dgraph-io/ristretto/v2"
)

// handleCache bounds how many inactive segments keep their file descriptor and
// index mappings open. Active segments are pinned outside the cache. When the
// cache evicts (or refuses to admit) a handle, the segment drops its own
// reference; readers still holding the handle keep it alive until they
// release it, so nothing is closed or unmapped under a reader.
type handleCache struct {
	c *ristretto.Cache[uint64, *handle]
}

// newHandleCache returns a cache holding at most max open inactive segments;
// max <= 0 means no caching (handles close as soon as readers release them).
func newHandleCache(max int) (*handleCache, error) {
	if max <= 0 {
		return &handleCache{}, nil
	}
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *handle]{
		NumCounters:        int64(max) * 10,
		MaxCost:            int64(max),
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnExit: func(h *handle) {
			if h != nil {
				h.seg.evictHandle(h)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return &handleCache{c: c}, nil
}

// admit registers a newly opened handle of s.
func (hc *handleCache) admit(s *segment, h *handle) {
	if hc == nil || hc.c == nil || !hc.c.Set(s.id, h, 1) {
		s.evictHandle(h)
	}
}

// forget removes s from the cache (its handle is being retired).
func (hc *handleCache) forget(s *segment) {
	if hc != nil && hc.c != nil {
		hc.c.Del(s.id)
	}
}

func (hc *handleCache) close() {
	if hc != nil && hc.c != nil {
		hc.c.Close()
	}
}
