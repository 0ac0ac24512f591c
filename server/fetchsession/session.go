// Package fetchsession is the broker's cache of incremental fetch sessions
// (Kafka's KIP-227). A client that fetches many partitions again and again
// (a consumer's long polls, a follower's replica fetches) opens a session
// with a full fetch; the broker remembers the partitions and each one's
// fetch position, and the client's next fetches name only the partitions
// whose position changed (and those it adds or forgets). The broker's
// answer to such an incremental fetch lists only the partitions with
// something new: records, an error, or a high watermark, last stable
// offset or log start offset other than the last one it answered. An idle
// client of thousands of partitions then sends and receives a few bytes
// per fetch instead of every partition every time.
//
// # Protocol
//
// The request's SessionID and SessionEpoch say what the client wants:
//
//   - 0 and -1 (the final epoch): a full fetch without a session (what
//     clients without sessions send);
//   - 0 and 0: a full fetch that opens a session: the answer carries the
//     new session's id (or 0 when the cache has no room: the client goes
//     on without one);
//   - id and 0: the session is closed and a new one opened (full fetch);
//   - id and -1: the session is closed; a full fetch without a session;
//   - id and epoch > 0: an incremental fetch. An unknown id is answered
//     FETCH_SESSION_ID_NOT_FOUND, an epoch other than the one expected
//     (one more than the last, the first incremental fetch's being 1)
//     INVALID_FETCH_SESSION_EPOCH; either way the client starts over with
//     a full fetch.
//
// # Bounds
//
// The cache holds at most Slots sessions (Kafka's
// max.incremental.fetch.session.cache.slots, 1,000). When it is full a new
// session takes the place of the least recently used one that has been
// idle for EvictAfter (Kafka's min.incremental.fetch.session.eviction.ms,
// 2 minutes) or, failing that, of the least recently used consumer session
// with fewer partitions than the new one when the new one is a follower's
// or larger; otherwise the fetch goes on without a session.
//
// # Passing over unchanged partitions
//
// An incremental fetch does not even read a session partition whose
// answer cannot have changed: the client was at the end it may read (the
// high watermark or last stable offset for a consumer, the log end for a
// follower), had nothing sent and no error in the last answer, did not
// name it since, and its change counter has the same value as
// when it was read for that answer (a change counter that moves whenever
// its high watermark, log end, log start, role or leader epoch may have
// moved). Fetch.Partitions lists only the others; a fetch that
// waits for data must also wake when a passed-over partition moves
// (Fetch.Covers, Fetch.Moved). For a follower's session, each fetch that
// passes over a partition writes the time to the partition's Clock: the
// leader counts it as a fetch at its log end, so the follower stays in
// sync (replica lag) without the partition being read. An idle follower
// or consumer of thousands of partitions then costs its leader a few
// comparisons per partition and fetch.
//
// # Idle sessions cost nothing per partition
//
// Even those comparisons are skipped while nothing can have changed: when
// the last look at a session's partitions (a "scan") found every one of
// them passed over, nothing of the session changed since (no partition
// named, forgotten or answered) and the cache's Moves has not moved (no
// partition of the broker moved), the next incremental fetch passes over
// them all without looking at any. The clocks of a follower's session
// follow the same rule: each scan puts the partitions it passes over in a
// new "run" of the session, whose time is that of the fetch; the fetches
// that pass over the whole run without a scan write their time once, to
// the run. A partition's Clock reads its run's time while it is in one;
// a scan that finds it no longer passed over takes it out, its clock then
// keeping the time of the last fetch that passed over it. A run is never
// written again once a scan replaced it, so a clock never reads a time at
// which its partition was not passed over.
package fetchsession

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// FinalEpoch is the epoch of a fetch without (or closing) a session;
// InitialEpoch that of a full fetch opening one.
const (
	FinalEpoch   int32 = -1
	InitialEpoch int32 = 0
)

// Errors of Begin (the fetch's top-level error).
var (
	ErrSessionNotFound = errors.New("fetch session id not found")
	ErrInvalidEpoch    = errors.New("invalid fetch session epoch")
)

// Key names a partition.
type Key struct {
	Topic     string
	Partition int32
}

// Partition is a partition of a fetch: what the client asks (its fetch
// position), and for a session's partition what the broker last answered.
type Partition struct {
	Key
	FetchOffset        int64
	LogStartOffset     int64 // a follower's
	MaxBytes           int32
	CurrentLeaderEpoch int32
	LastFetchedEpoch   int32

	answered                 bool
	hw, lastStable, logStart int64

	// What was read for the last answer (Read), to pass over the
	// partition while it does not change; clock is a follower session's
	// (see the package doc), made on first use.
	counter  *atomic.Uint64
	moves    uint64
	caughtUp bool
	clock    *Clock
}

// Clock is when a follower's session last passed over a partition (unix
// nanoseconds; 0: never), for the leader's replica lag (see the package
// doc). A nil Clock reads 0.
type Clock struct {
	run atomic.Pointer[run] // the run the partition is in (nil: none)
	at  atomic.Int64        // out of a run: the last time one passed over it
}

// Load is the time of the last fetch of the session that passed over the
// partition.
func (c *Clock) Load() int64 {
	if c == nil {
		return 0
	}
	if r := c.run.Load(); r != nil {
		return r.at.Load()
	}
	return c.at.Load()
}

// leave takes c out of its run, keeping the run's time. Caller holds the
// cache's mu.
func (c *Clock) leave() {
	if r := c.run.Load(); r != nil {
		c.at.Store(r.at.Load())
		c.run.Store(nil)
	}
}

// run is a set of a follower session's partitions passed over by every
// fetch since the scan that made it (see the package doc): at is the time
// of the last of those fetches.
type run struct{ at atomic.Int64 }

// Read is what the broker read of a partition of a session's fetch, filled
// through Fetch.Read while the fetch reads it: the partition's change
// counter (it moves, after the change, whenever the partition's high
// watermark, log end, log start, role or leader epoch may have changed)
// and its value read before anything else of the partition, and whether
// the client's position was at the end it may read (nothing to send).
type Read struct {
	Counter  *atomic.Uint64
	Moves    uint64
	CaughtUp bool
}

// quiet reports whether p's answer cannot have changed since the last one.
// Caller holds the cache's mu.
func (p *Partition) quiet() bool {
	if !p.answered || !p.caughtUp || p.counter == nil {
		return false
	}
	return p.counter.Load() == p.moves
}

// Session is one client's set of partitions.
type Session struct {
	id       int32
	epoch    int32 // the next incremental fetch's
	follower bool
	// parts and index change under both the cache's mu and keysMu; Covers
	// reads index under keysMu alone (it is called while a partition's
	// lock is held, and must not wait for the cache).
	keysMu   sync.RWMutex
	parts    []*Partition
	index    map[Key]int
	lastUsed time.Time
	// idle: the last scan (Fetch.consider) passed over every partition,
	// the cache's Moves then read scanMoves, and nothing of the session
	// changed since (set, forget, Answer): an incremental fetch passes
	// over them all again without a look while Moves stays. run is the
	// current run of a follower's session (nil: none).
	idle      bool
	scanMoves uint64
	run       *run
}

// ID is the session's id.
func (s *Session) ID() int32 { return s.id }

// Len is how many partitions the session holds.
func (s *Session) Len() int { return len(s.parts) }

func (s *Session) set(p Partition) {
	s.idle = false
	if i, ok := s.index[p.Key]; ok {
		old := s.parts[i]
		old.FetchOffset, old.LogStartOffset, old.MaxBytes = p.FetchOffset, p.LogStartOffset, p.MaxBytes
		old.CurrentLeaderEpoch, old.LastFetchedEpoch = p.CurrentLeaderEpoch, p.LastFetchedEpoch
		old.caughtUp = false // named: read it
		return
	}
	np := p
	np.answered, np.counter, np.caughtUp, np.clock = false, nil, false, nil
	s.index[p.Key] = len(s.parts)
	s.parts = append(s.parts, &np)
}

// forget drops the partitions ks in one pass (forgetting them one at a
// time moved the rest of the list each time: a follower forgetting
// thousands of partitions at a leader change took quadratic time).
func (s *Session) forget(ks []Key) {
	drop := 0
	for _, k := range ks {
		if _, ok := s.index[k]; ok {
			delete(s.index, k)
			drop++
		}
	}
	if drop == 0 {
		return
	}
	s.idle = false
	kept := s.parts[:0]
	for _, p := range s.parts {
		if _, ok := s.index[p.Key]; ok {
			s.index[p.Key] = len(kept)
			kept = append(kept, p)
		}
	}
	clear(s.parts[len(kept):])
	s.parts = kept
}

// Cache holds the sessions of a broker. It is safe for concurrent use.
type Cache struct {
	// Slots bounds the sessions (0: 1,000).
	Slots int
	// EvictAfter is how long a session must be idle before a new one may
	// take its place (0: 2 minutes).
	EvictAfter time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Moves, when set, counts the moves of every partition's change
	// counter (after the move): a fetch waiting on a session whose count
	// is the one read before the fetch passed over partitions saw no move
	// (Fetch.Moved) without looking at them, and an idle session's fetch
	// passes over its partitions without a look while it stays (see the
	// package doc).
	Moves func() uint64

	mu       sync.Mutex
	sessions map[int32]*Session
	rng      *rand.Rand
	looked   int64 // partitions incremental fetches looked at (Looked)
}

// Looked is how many partitions incremental fetches have looked at to
// decide which to read (tests: an idle session's fetch looks at none).
func (c *Cache) Looked() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.looked
}

func (c *Cache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Len is how many sessions the cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions)
}

// Fetch is one fetch request resolved against the cache: the partitions to
// read, and whether the answer lists them all (Full) or only those with
// something new.
type Fetch struct {
	c     *Cache
	sess  *Session // nil: no session
	full  bool
	parts []Partition // copies: a later fetch of the session may move them
	reads []Read      // per partition of parts (a session's fetch)
	// skipped is how many of the session's partitions the fetch passed
	// over (an incremental fetch); moves the cache's Moves before.
	skipped int
	moves   uint64
}

// SessionID is the id the answer carries (0: none).
func (f *Fetch) SessionID() int32 {
	if f.sess == nil {
		return 0
	}
	return f.sess.id
}

// Full reports whether the answer lists every partition.
func (f *Fetch) Full() bool { return f.full }

// Partitions lists the partitions to read, in a stable order: the
// request's for a full fetch, the session's for an incremental one.
func (f *Fetch) Partitions() []Partition { return f.parts }

func copies(ps []*Partition) []Partition {
	out := make([]Partition, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}

// Begin resolves a fetch: sessionID and epoch from the request, follower
// for a replica's fetch, the partitions it names (with their positions)
// and those it forgets (incremental fetches only).
func (c *Cache) Begin(sessionID, epoch int32, follower bool, parts []Partition, forgotten []Key) (*Fetch, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions == nil {
		c.sessions = map[int32]*Session{}
		c.rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x6b766c6f67))
	}
	now := c.now()
	if epoch > 0 {
		s := c.sessions[sessionID]
		if sessionID == 0 || s == nil {
			return nil, ErrSessionNotFound
		}
		if epoch != s.epoch {
			return nil, ErrInvalidEpoch
		}
		s.keysMu.Lock()
		for _, p := range parts {
			s.set(p)
		}
		s.forget(forgotten)
		s.keysMu.Unlock()
		s.epoch = nextEpoch(s.epoch)
		s.lastUsed = now
		f := &Fetch{c: c, sess: s}
		f.consider(now.UnixNano())
		return f, nil
	}
	if sessionID != 0 {
		delete(c.sessions, sessionID) // closed (epoch 0: replaced below)
	}
	f := &Fetch{c: c, full: true}
	if epoch == InitialEpoch {
		if s := c.open(follower, len(parts), now); s != nil {
			s.keysMu.Lock()
			for _, p := range parts {
				s.set(p)
			}
			s.keysMu.Unlock()
			f.sess = s
			f.parts = copies(s.parts)
			f.reads = make([]Read, len(f.parts))
			return f, nil
		}
	}
	f.parts = parts
	return f, nil
}

// consider lists in f.parts the session's partitions an incremental fetch
// reads: all but the quiet ones. With credit (a unix-nano time, > 0), the
// passed-over partitions of a follower's session have credit as their
// clock's time (see the package doc). An idle session (Session.idle)
// whose Moves have not moved passes over all of them without a look.
// Caller holds the cache's mu.
func (f *Fetch) consider(credit int64) {
	s := f.sess
	if f.c.Moves != nil {
		f.moves = f.c.Moves()
	}
	f.parts, f.skipped = f.parts[:0], 0
	if credit > 0 && s.idle && f.c.Moves != nil && f.moves == s.scanMoves {
		f.skipped = len(s.parts)
		if s.run != nil {
			s.run.at.Store(credit)
		}
		f.reads = nil
		return
	}
	// A scan. With credit, the partitions passed over make a new run
	// (the current one is never written again: a partition leaving it
	// keeps its time); without (a refresh), clocks stay as they are and
	// the next fetch scans again.
	var nr *run
	if credit > 0 && s.follower {
		nr = new(run)
		nr.at.Store(credit)
	}
	f.c.looked += int64(len(s.parts))
	for _, p := range s.parts {
		if p.quiet() {
			f.skipped++
			if nr != nil && p.clock != nil {
				p.clock.run.Store(nr)
			}
			continue
		}
		if credit > 0 && p.clock != nil {
			p.clock.leave()
		}
		f.parts = append(f.parts, *p)
	}
	if credit > 0 {
		s.run = nr
		s.idle = f.skipped == len(s.parts)
		s.scanMoves = f.moves
	} else {
		s.idle = false
	}
	f.reads = make([]Read, len(f.parts))
}

// Read is where the broker records what it read of partition i of
// Partitions (nil without a session).
func (f *Fetch) Read(i int) *Read {
	if f == nil || f.sess == nil || i >= len(f.reads) {
		return nil
	}
	return &f.reads[i]
}

// Clock is partition i's clock in a follower's session (nil otherwise):
// see the package doc.
func (f *Fetch) Clock(i int) *Clock {
	if f == nil || f.sess == nil || !f.sess.follower {
		return nil
	}
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	j, ok := f.sess.index[f.parts[i].Key]
	if !ok {
		return nil
	}
	p := f.sess.parts[j]
	if p.clock == nil {
		p.clock = new(Clock)
	}
	return p.clock
}

// Skipped is how many of the session's partitions the fetch passed over.
func (f *Fetch) Skipped() int {
	if f == nil || f.sess == nil {
		return 0
	}
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	return f.skipped
}

// Refresh lists again the partitions an incremental fetch reads, for a
// fetch woken while it waited: a passed-over partition that moved is read
// too. It reports whether the list changed.
func (f *Fetch) Refresh() bool {
	if f == nil || f.sess == nil || f.full {
		return false
	}
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	skipped := f.skipped
	if skipped == 0 {
		return false
	}
	f.consider(0)
	return f.skipped != skipped
}

// Covers reports whether k is one of the session's partitions. It does
// not wait for the cache's lock.
func (f *Fetch) Covers(k Key) bool {
	if f.sess == nil {
		return false
	}
	f.sess.keysMu.RLock()
	defer f.sess.keysMu.RUnlock()
	_, ok := f.sess.index[k]
	return ok
}

// Moved reports whether a partition the fetch passed over changed since.
func (f *Fetch) Moved() bool {
	if f.sess == nil {
		return false
	}
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if f.skipped == 0 || f.c.Moves != nil && f.c.Moves() == f.moves {
		return false
	}
	n := 0
	for _, p := range f.sess.parts {
		if p.quiet() {
			n++
		}
	}
	return n < f.skipped
}

// nextEpoch is the epoch after e (wrapping past the largest to 1).
func nextEpoch(e int32) int32 {
	if e == 1<<31-1 {
		return 1
	}
	return e + 1
}

// open makes room (see the package doc) and opens a session, or returns
// nil. Caller holds mu.
func (c *Cache) open(follower bool, n int, now time.Time) *Session {
	slots := c.Slots
	if slots <= 0 {
		slots = 1000
	}
	evictAfter := c.EvictAfter
	if evictAfter <= 0 {
		evictAfter = 2 * time.Minute
	}
	if len(c.sessions) >= slots {
		var victim *Session
		for _, s := range c.sessions { // the least recently used stale one
			if now.Sub(s.lastUsed) >= evictAfter && (victim == nil || s.lastUsed.Before(victim.lastUsed)) {
				victim = s
			}
		}
		if victim == nil {
			for _, s := range c.sessions { // a less privileged one
				if !s.follower && len(s.parts) < n || !s.follower && follower {
					if victim == nil || s.lastUsed.Before(victim.lastUsed) {
						victim = s
					}
				}
			}
		}
		if victim == nil {
			return nil
		}
		delete(c.sessions, victim.id)
	}
	id := int32(0)
	for id == 0 || c.sessions[id] != nil {
		id = c.rng.Int32()
	}
	s := &Session{id: id, epoch: 1, follower: follower, index: map[Key]int{}, lastUsed: now}
	c.sessions[id] = s
	return s
}

// Answer records what the answer says of partition i of Partitions (its
// high watermark, last stable offset and log start offset; whether it
// carries records or an error) and reports whether the answer lists it:
// always in a full answer, in an incremental one when something is new.
func (f *Fetch) Answer(i int, hw, lastStable, logStart int64, data bool, errCode int16) bool {
	if f.sess == nil {
		return true
	}
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	j, ok := f.sess.index[f.parts[i].Key]
	if !ok {
		return f.full || data || errCode != 0 // forgotten meanwhile
	}
	p := f.sess.parts[j]
	f.sess.idle = false
	changed := !p.answered || p.hw != hw || p.lastStable != lastStable || p.logStart != logStart
	p.answered, p.hw, p.lastStable, p.logStart = true, hw, lastStable, logStart
	if i < len(f.reads) {
		r := f.reads[i]
		p.counter, p.moves = r.Counter, r.Moves
		p.caughtUp = r.CaughtUp && !data && errCode == 0
	}
	if errCode != 0 {
		// Answered again next time: the client may still be waiting for
		// the partition to come back.
		p.answered = false
	}
	return f.full || changed || data || errCode != 0
}
