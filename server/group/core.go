package group

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// core is the deterministic coordinator of the groups that map to one
// __consumer_offsets partition. It has no goroutines, locks, timers or
// clock: every method takes the current time, deadlines are kept as
// times and processed by tick, records go through write (synchronous),
// and responses are queued as effects that the runner delivers after the
// write is durable. Not safe for concurrent use; the runner (shard)
// serialises calls.
type core struct {
	cfg       *Config
	partition int32
	log       *slog.Logger
	newID     func(prefix string) string
	// write appends records to the partition (synchronously; made durable
	// by the runner before effects are delivered).
	write func([]Record) error
	// writeTxn appends records as one transactional batch of a producer.
	writeTxn func(pid int64, epoch int16, recs []Record) error

	groups map[string]*group
	// onRebalance, when set, is called for every new generation.
	onRebalance func()

	// wake is a lower bound on every pending deadline (zero: none); tick
	// scans only once now reaches it, so heartbeats cost O(1).
	wake time.Time
	// nextSweep is when expired offsets are next removed.
	nextSweep time.Time

	effects []func(syncErr error)
	wrote   bool

	// Offset commits appended but not yet made durable: OffsetFetch does
	// not see them until the runner's Sync succeeds (installCommits), as
	// Kafka keeps pending offset commits apart from committed ones. A
	// leader cut off from its followers would otherwise serve commits that
	// the next leader never had: committed offsets would go back.
	pendingCommits []pendingCommit
	commitSeq      uint64
}

// pendingCommit is one offset of a commit waiting for its Sync.
type pendingCommit struct {
	g     *group
	tp    TopicPartition
	entry *offsetEntry
	// txn: a transactional commit of producer pid, installed as pending
	// (group.txnOffsets) rather than committed.
	txn bool
	pid int64
}

// takeCommits returns the commits appended since the last call.
func (c *core) takeCommits() []pendingCommit {
	p := c.pendingCommits
	c.pendingCommits = nil
	return p
}

// installCommits makes commits visible once their records are durable
// (synced: the Sync that followed their append succeeded), or forgets
// them (the commit failed; the record may still surface at the next load,
// as in Kafka). A commit never replaces a later one of the same partition.
func (c *core) installCommits(commits []pendingCommit, synced bool) {
	for _, pc := range commits {
		g := pc.g
		g.pendingCommits--
		if synced && c.groups[g.id] == g && pc.txn {
			g.addTxnOffset(pc.pid, pc.tp, pc.entry)
		} else if synced && c.groups[g.id] == g {
			if cur := g.offsets[pc.tp]; cur == nil || cur.seq < pc.entry.seq {
				g.offsets[pc.tp] = pc.entry
			}
		}
		if c.groups[g.id] == g {
			c.forgetIfVacant(g)
		}
	}
}

func newCore(cfg *Config, partition int32, log *slog.Logger, newID func(string) string, write func([]Record) error) *core {
	return &core{
		cfg:       cfg,
		partition: partition,
		log:       log,
		newID:     newID,
		write:     write,
		groups:    map[string]*group{},
	}
}

// schedule makes sure tick runs at or after t.
func (c *core) schedule(t time.Time) {
	if c.wake.IsZero() || t.Before(c.wake) {
		c.wake = t
	}
}

// emit queues a response.
func (c *core) emit(f func(syncErr error)) { c.effects = append(c.effects, f) }

// takeEffects returns and clears the queued responses and whether
// records were written since the last call.
func (c *core) takeEffects() ([]func(error), bool) {
	e, w := c.effects, c.wrote
	c.effects, c.wrote = nil, false
	return e, w
}

// store appends records, wrapping a failure in ErrCoordinatorNotAvailable
// (as Kafka reports most failed writes to the offsets topic), or in
// ErrRecordTooLarge when the store says the records are too large.
func (c *core) store(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := c.write(recs); err != nil {
		if errors.Is(err, ErrRecordTooLarge) {
			return fmt.Errorf("%w: writing to %s-%d: %v", ErrRecordTooLarge, OffsetsTopic, c.partition, err)
		}
		return fmt.Errorf("%w: writing to %s-%d: %v", ErrCoordinatorNotAvailable, OffsetsTopic, c.partition, err)
	}
	c.wrote = true
	return nil
}

// storeGroup writes g's metadata, with assignment (nil: the members'
// current assignments).
func (c *core) storeGroup(g *group, assignment map[string][]byte) error {
	get := func(m *member) []byte { return m.assignment }
	if assignment != nil {
		get = func(m *member) []byte { return assignment[m.id] }
	}
	return c.store([]Record{{Key: groupKey(g.id), Value: groupValue(g, get)}})
}

// ---- answering parked requests ----

// answerJoin completes m's parked JoinGroup and restarts its session.
func (c *core) answerJoin(m *member, res JoinResult, now time.Time) {
	cb := m.joinCB
	if cb == nil {
		return
	}
	m.joinCB = nil
	c.emit(func(error) { cb(res) })
	c.resetSession(m, now)
}

// answerSync completes m's parked SyncGroup and restarts its session.
func (c *core) answerSync(m *member, res SyncResult, now time.Time) {
	cb := m.syncCB
	if cb == nil {
		return
	}
	m.syncCB = nil
	c.emit(func(error) { cb(res) })
	c.resetSession(m, now)
}

func (c *core) resetSession(m *member, now time.Time) {
	m.deadline = now.Add(m.sessionTimeout)
	c.schedule(m.deadline)
}

func joinError(memberID string, err error) JoinResult {
	return JoinResult{Err: err, MemberID: memberID, Generation: -1}
}

func (c *core) replyJoin(cb func(JoinResult), res JoinResult) {
	c.emit(func(error) { cb(res) })
}

func (c *core) replySync(cb func(SyncResult), err error) {
	c.emit(func(error) { cb(SyncResult{Err: err}) })
}

// ---- JoinGroup ----

func (c *core) join(now time.Time, req JoinRequest, cb func(JoinResult)) {
	if req.Group == "" {
		c.replyJoin(cb, joinError(req.MemberID, ErrInvalidGroupID))
		return
	}
	if req.SessionTimeout < c.cfg.MinSessionTimeout || req.SessionTimeout > c.cfg.MaxSessionTimeout {
		c.replyJoin(cb, joinError(req.MemberID, ErrInvalidSessionTimeout))
		return
	}
	req.Protocols = uniqueProtocols(req.Protocols)
	isNew := req.MemberID == ""
	g := c.groups[req.Group]
	if g == nil {
		if !isNew {
			c.replyJoin(cb, joinError(req.MemberID, ErrUnknownMemberID))
			return
		}
		g = newGroup(req.Group, now)
		c.groups[req.Group] = g
	}
	switch {
	case !c.acceptJoining(g, req.MemberID):
		if m := g.byID[req.MemberID]; m != nil {
			c.removeMember(now, g, m, "group.max.size reached")
		}
		c.replyJoin(cb, joinError("", ErrGroupMaxSizeReached))
	case isNew:
		c.joinNewMember(now, g, req, cb)
	default:
		c.joinCurrentMember(now, g, req, cb)
	}
	c.maybeCompleteJoin(g, now)
	c.forgetIfVacant(g)
}

// forgetIfVacant drops a group a failed request created: empty, never
// through a generation (so never written), with no members, pending ids or
// offsets.
func (c *core) forgetIfVacant(g *group) {
	if g.state == Empty && g.generation == 0 && len(g.members) == 0 && len(g.pending) == 0 && len(g.offsets) == 0 && g.pendingCommits == 0 && len(g.txnOffsets) == 0 {
		delete(c.groups, g.id)
	}
}

// acceptJoining applies group.max.size: existing members are accepted (in
// PreparingRebalance only those already waiting), new ones while there is
// room.
func (c *core) acceptJoining(g *group, memberID string) bool {
	switch g.state {
	case Empty, Dead:
		return true
	case PreparingRebalance:
		if m := g.byID[memberID]; m != nil && m.awaitingJoin() {
			return true
		}
		waiting := 0
		for _, m := range g.members {
			if m.awaitingJoin() {
				waiting++
			}
		}
		return waiting < c.cfg.MaxSize
	default:
		return g.byID[memberID] != nil || len(g.members) < c.cfg.MaxSize
	}
}

func (c *core) joinNewMember(now time.Time, g *group, req JoinRequest, cb func(JoinResult)) {
	switch {
	case g.state == Dead:
		c.replyJoin(cb, joinError("", ErrCoordinatorNotAvailable))
		return
	case !g.supportsProtocols(req.ProtocolType, req.Protocols):
		c.replyJoin(cb, joinError("", ErrInconsistentGroupProtocol))
		return
	}
	prefix := req.ClientID
	if req.InstanceID != nil {
		prefix = *req.InstanceID
	}
	id := c.newID(prefix)
	switch {
	case req.InstanceID != nil:
		if old, ok := g.static[*req.InstanceID]; ok {
			c.rejoinStatic(now, g, old, id, req, cb)
		} else {
			c.addMember(now, g, id, req, cb)
		}
	case req.RequireKnownMemberID:
		// Two-step join: hand out the id and wait for the member to come
		// back with it (within its session timeout).
		dl := now.Add(req.SessionTimeout)
		g.pending[id] = dl
		c.schedule(dl)
		c.replyJoin(cb, joinError(id, ErrMemberIDRequired))
	default:
		c.addMember(now, g, id, req, cb)
	}
}

func (c *core) joinCurrentMember(now time.Time, g *group, req JoinRequest, cb func(JoinResult)) {
	switch {
	case g.state == Dead:
		c.replyJoin(cb, joinError(req.MemberID, ErrCoordinatorNotAvailable))
		return
	case !g.supportsProtocols(req.ProtocolType, req.Protocols):
		c.replyJoin(cb, joinError(req.MemberID, ErrInconsistentGroupProtocol))
		return
	}
	if g.isPending(req.MemberID) {
		if req.InstanceID != nil { // pending ids are only handed to dynamic members
			c.replyJoin(cb, joinError(req.MemberID, ErrUnknownMemberID))
			return
		}
		c.addMember(now, g, req.MemberID, req, cb)
		return
	}
	if err := g.validateMember(req.MemberID, req.InstanceID); err != nil {
		c.replyJoin(cb, joinError(req.MemberID, err))
		return
	}
	m := g.byID[req.MemberID]
	current := func(withMembers bool) JoinResult {
		res := JoinResult{
			MemberID:     m.id,
			Generation:   g.generation,
			ProtocolType: g.protocolTypePtr(),
			Protocol:     g.protocolPtr(),
			Leader:       g.leader,
		}
		if withMembers {
			res.Members = g.joinMembers()
		}
		return res
	}
	switch g.state {
	case PreparingRebalance:
		c.updateMember(now, g, m, req, cb, "member rejoined during rebalance")
	case CompletingRebalance:
		if m.matches(req.Protocols) {
			// A repeated join (the response got lost): same generation.
			c.replyJoin(cb, current(m.id == g.leader))
		} else {
			c.updateMember(now, g, m, req, cb, "member changed its protocols")
		}
	case Stable:
		if m.id == g.leader || !m.matches(req.Protocols) {
			// The leader rejoining forces a rebalance (its way to react to
			// metadata changes), as does a member with new protocols.
			c.updateMember(now, g, m, req, cb, "leader rejoined or member changed its protocols")
		} else {
			c.replyJoin(cb, current(false))
		}
	default: // Empty: members are gone
		c.replyJoin(cb, joinError(req.MemberID, ErrUnknownMemberID))
	}
}

// addMember adds a member waiting in JoinGroup and starts a rebalance.
func (c *core) addMember(now time.Time, g *group, id string, req JoinRequest, cb func(JoinResult)) {
	m := &member{
		id:               id,
		instanceID:       req.InstanceID,
		clientID:         req.ClientID,
		clientHost:       req.ClientHost,
		protocolType:     req.ProtocolType,
		protocols:        req.Protocols,
		sessionTimeout:   req.SessionTimeout,
		rebalanceTimeout: req.RebalanceTimeout,
		joinCB:           cb,
		isNew:            true,
		deadline:         now.Add(c.cfg.NewMemberJoinTimeout),
	}
	if g.state == PreparingRebalance && g.generation == 0 {
		g.newMemberAdded = true
	}
	g.add(m)
	c.schedule(m.deadline)
	c.maybeRebalance(now, g, "member "+id+" joined")
}

// updateMember parks a current member's JoinGroup with its new protocols
// and starts a rebalance if none is under way.
func (c *core) updateMember(now time.Time, g *group, m *member, req JoinRequest, cb func(JoinResult), reason string) {
	if m.joinCB != nil {
		// A second JoinGroup replaces the first, which still gets an answer.
		c.answerJoin(m, joinError(m.id, ErrRebalanceInProgress), now)
	}
	g.setProtocols(m, req.Protocols, req.RebalanceTimeout, req.SessionTimeout)
	m.joinCB = cb
	c.maybeRebalance(now, g, reason)
}

// rejoinStatic handles a static member that comes back without its member
// id (a restarted process): it takes over the instance's slot under a new
// id, and a stable group keeps its assignment unless the protocol would
// change.
func (c *core) rejoinStatic(now time.Time, g *group, oldID, newID string, req JoinRequest, cb func(JoinResult)) {
	oldLeader := g.leader
	m := g.byID[oldID]
	// Whoever still waits under the old id is a duplicate instance: fence it.
	c.answerJoin(m, joinError(oldID, ErrFencedInstanceID), now)
	c.answerSync(m, SyncResult{Err: ErrFencedInstanceID}, now)
	m = g.replaceStatic(*req.InstanceID, oldID, newID)
	c.resetSession(m, now)
	oldProtocols, oldRebalance, oldSession := m.protocols, m.rebalanceTimeout, m.sessionTimeout
	g.setProtocols(m, req.Protocols, req.RebalanceTimeout, req.SessionTimeout)
	m.joinCB = cb

	switch g.state {
	case Stable:
		if g.selectProtocol() != g.protocol {
			c.maybeRebalance(now, g, "static member "+*req.InstanceID+" rejoined with other protocols")
			return
		}
		if err := c.storeGroup(g, nil); err != nil {
			// Undo: the old id stays the instance's.
			m.joinCB = nil
			g.setProtocols(m, oldProtocols, oldRebalance, oldSession)
			g.replaceStatic(*req.InstanceID, newID, oldID)
			c.resetSession(m, now)
			c.replyJoin(cb, JoinResult{Err: err, Generation: g.generation, ProtocolType: g.protocolTypePtr(), Protocol: g.protocolPtr(), Leader: oldLeader})
			return
		}
		res := JoinResult{
			MemberID:     newID,
			Generation:   g.generation,
			ProtocolType: g.protocolTypePtr(),
			Protocol:     g.protocolPtr(),
		}
		if req.SupportsSkipAssignment {
			// v9+: a leader learns it leads but must not reassign.
			res.Leader = g.leader
			if g.leader == newID {
				res.Members = g.joinMembers()
				res.SkipAssignment = true
			}
		} else {
			// Older members get the old leader id so that a returning
			// leader does not run an assignment a stable group would ignore.
			res.Leader = oldLeader
		}
		c.answerJoin(m, res, now)
	case CompletingRebalance:
		// The leader may be assigning to the old id: start over.
		c.prepareRebalance(now, g, "static member "+*req.InstanceID+" rejoined during CompletingRebalance")
	case PreparingRebalance:
		// It waits for the join phase like everyone else.
	default:
		c.answerJoin(m, joinError(newID, ErrUnknownMemberID), now)
	}
}

// ---- rebalance ----

func (c *core) maybeRebalance(now time.Time, g *group, reason string) {
	if canTransition(g.state, PreparingRebalance) {
		c.prepareRebalance(now, g, reason)
	}
}

// prepareRebalance starts a join phase: members waiting in SyncGroup are
// told to rejoin; the phase ends when every member has rejoined or at the
// rebalance timeout (for an empty group: after the initial delay).
func (c *core) prepareRebalance(now time.Time, g *group, reason string) {
	if g.state == CompletingRebalance {
		c.failAssignment(now, g, ErrRebalanceInProgress)
	}
	g.pendingSync = nil
	g.syncDeadline = time.Time{}
	if g.state == Empty {
		delay := c.cfg.InitialRebalanceDelay
		g.initialJoin = true
		g.joinRemaining = max(g.rebalanceTimeout()-delay, 0)
		g.joinDeadline = now.Add(delay)
	} else {
		g.initialJoin = false
		g.joinDeadline = now.Add(g.rebalanceTimeout())
	}
	c.log.Info("preparing to rebalance group", "group", g.id, "state", g.state.String(), "generation", g.generation, "reason", reason)
	g.transition(PreparingRebalance, now)
	c.schedule(g.joinDeadline)
	c.maybeCompleteJoin(g, now)
}

// maybeCompleteJoin ends a (non-initial) join phase once everyone joined.
func (c *core) maybeCompleteJoin(g *group, now time.Time) {
	if g.state == PreparingRebalance && !g.initialJoin && g.allJoined() {
		c.completeJoin(now, g)
	}
}

// joinDeadlinePassed ends the join phase at its deadline, or extends the
// initial delay while new members keep arriving.
func (c *core) joinDeadlinePassed(now time.Time, g *group) {
	if g.initialJoin && g.newMemberAdded && g.joinRemaining > 0 {
		g.newMemberAdded = false
		delay := min(c.cfg.InitialRebalanceDelay, g.joinRemaining)
		g.joinRemaining = max(g.joinRemaining-delay, 0)
		g.joinDeadline = now.Add(delay)
		c.schedule(g.joinDeadline)
		return
	}
	c.completeJoin(now, g)
}

// completeJoin ends the join phase: dynamic members that did not rejoin
// are dropped, the generation advances, a protocol is chosen and every
// member gets its JoinGroup answer (the leader with the member list); or
// the group becomes Empty.
func (c *core) completeJoin(now time.Time, g *group) {
	for _, m := range append([]*member(nil), g.members...) {
		if !m.awaitingJoin() && !m.isStatic() {
			c.log.Info("removing group member that did not rejoin", "group", g.id, "member", m.id)
			c.dropMember(now, g, m)
		}
	}
	if g.state == Dead {
		return
	}
	if !g.electJoinedLeader() && len(g.members) > 0 {
		// Only static members remain and none rejoined: wait for them or
		// for their sessions to end.
		g.initialJoin = false
		g.joinDeadline = now.Add(g.rebalanceTimeout())
		c.schedule(g.joinDeadline)
		return
	}
	g.generation++
	if c.onRebalance != nil {
		c.onRebalance()
	}
	g.initialJoin = false
	g.joinDeadline = time.Time{}
	g.pendingSync = nil
	if len(g.members) == 0 {
		g.protocol = ""
		g.computeSubscribed()
		g.transition(Empty, now)
		c.log.Info("group is empty", "group", g.id, "generation", g.generation)
		if err := c.storeGroup(g, nil); err != nil {
			// The previous generation stays in the log; it has no live
			// members either way.
			c.log.Warn("writing empty group metadata failed", "group", g.id, "err", err)
		}
		return
	}
	g.protocol = g.selectProtocol()
	g.computeSubscribed()
	g.transition(CompletingRebalance, now)
	c.log.Info("group rebalanced", "group", g.id, "generation", g.generation, "protocol", g.protocol, "members", len(g.members), "leader", g.leader)
	g.pendingSync = map[string]bool{}
	for _, m := range g.members {
		res := JoinResult{
			MemberID:     m.id,
			Generation:   g.generation,
			ProtocolType: g.protocolTypePtr(),
			Protocol:     g.protocolPtr(),
			Leader:       g.leader,
		}
		if m.id == g.leader {
			res.Members = g.joinMembers()
		}
		c.answerJoin(m, res, now)
		c.resetSession(m, now) // also for static members that did not rejoin
		m.isNew = false
		g.pendingSync[m.id] = true
	}
	g.syncGeneration = g.generation
	g.syncDeadline = now.Add(g.rebalanceTimeout())
	c.schedule(g.syncDeadline)
}

// syncDeadlinePassed removes members that never sent SyncGroup after the
// join phase and rebalances without them.
func (c *core) syncDeadlinePassed(now time.Time, g *group) {
	g.syncDeadline = time.Time{}
	if g.syncGeneration != g.generation || (g.state != CompletingRebalance && g.state != Stable) || len(g.pendingSync) == 0 {
		return
	}
	for _, id := range sortedKeys(g.pendingSync) {
		if m := g.byID[id]; m != nil {
			c.log.Info("removing group member that did not sync", "group", g.id, "member", id)
			c.dropMember(now, g, m)
		}
	}
	c.prepareRebalance(now, g, "members did not send SyncGroup in time")
}

// failAssignment clears assignments and answers members waiting in
// SyncGroup with err.
func (c *core) failAssignment(now time.Time, g *group, err error) {
	for _, m := range g.members {
		m.assignment = nil
		c.answerSync(m, SyncResult{Err: err}, now)
	}
}

// dropMember removes m, answering what it has parked with
// UNKNOWN_MEMBER_ID, without reacting (callers decide).
func (c *core) dropMember(now time.Time, g *group, m *member) {
	c.answerJoin(m, joinError("", ErrUnknownMemberID), now)
	c.answerSync(m, SyncResult{Err: ErrUnknownMemberID}, now)
	g.remove(m.id)
}

// removeMember removes m (left, failed or shed) and lets the group react.
func (c *core) removeMember(now time.Time, g *group, m *member, reason string) {
	c.log.Info("removing group member", "group", g.id, "member", m.id, "reason", reason)
	c.dropMember(now, g, m)
	switch g.state {
	case Stable, CompletingRebalance:
		c.maybeRebalance(now, g, reason)
	case PreparingRebalance:
		c.maybeCompleteJoin(g, now)
	}
}

func (c *core) removePending(now time.Time, g *group, id string) {
	delete(g.pending, id)
	c.maybeCompleteJoin(g, now)
}

// ---- SyncGroup ----

func (c *core) sync(now time.Time, req SyncRequest, cb func(SyncResult)) {
	if req.Group == "" {
		c.replySync(cb, ErrInvalidGroupID)
		return
	}
	g := c.groups[req.Group]
	if g == nil {
		c.replySync(cb, ErrUnknownMemberID)
		return
	}
	if g.state == Dead {
		c.replySync(cb, ErrCoordinatorNotAvailable)
		return
	}
	if err := g.validateMember(req.MemberID, req.InstanceID); err != nil {
		c.replySync(cb, err)
		return
	}
	switch {
	case req.Generation != g.generation:
		c.replySync(cb, ErrIllegalGeneration)
		return
	case req.ProtocolType != nil && *req.ProtocolType != g.protocolType,
		req.Protocol != nil && *req.Protocol != g.protocol:
		c.replySync(cb, ErrInconsistentGroupProtocol)
		return
	}
	m := g.byID[req.MemberID]
	switch g.state {
	case Empty:
		c.replySync(cb, ErrUnknownMemberID)
	case PreparingRebalance:
		c.replySync(cb, ErrRebalanceInProgress)
	case CompletingRebalance:
		if m.syncCB != nil {
			c.answerSync(m, SyncResult{Err: ErrRebalanceInProgress}, now)
		}
		m.syncCB = cb
		delete(g.pendingSync, m.id)
		if m.id != g.leader {
			return // waits for the leader's assignment
		}
		assignment := make(map[string][]byte, len(g.members))
		for _, gm := range g.members {
			assignment[gm.id] = req.Assignments[gm.id]
			if assignment[gm.id] == nil {
				assignment[gm.id] = []byte{}
			}
		}
		if err := c.storeGroup(g, assignment); err != nil {
			c.failAssignment(now, g, err)
			c.maybeRebalance(now, g, "storing the assignment failed")
			return
		}
		for _, gm := range g.members {
			gm.assignment = assignment[gm.id]
		}
		g.transition(Stable, now)
		c.log.Info("group stable", "group", g.id, "generation", g.generation)
		for _, gm := range g.members {
			c.answerSync(gm, SyncResult{ProtocolType: g.protocolTypePtr(), Protocol: g.protocolPtr(), Assignment: gm.assignment}, now)
		}
	case Stable:
		delete(g.pendingSync, m.id)
		res := SyncResult{ProtocolType: g.protocolTypePtr(), Protocol: g.protocolPtr(), Assignment: m.assignment}
		c.emit(func(error) { cb(res) })
		c.resetSession(m, now)
	}
}

// ---- Heartbeat, LeaveGroup ----

func (c *core) heartbeat(now time.Time, req HeartbeatRequest) error {
	if req.Group == "" {
		return ErrInvalidGroupID
	}
	g := c.groups[req.Group]
	if g == nil {
		return ErrUnknownMemberID
	}
	if g.state == Dead {
		return ErrCoordinatorNotAvailable
	}
	if err := g.validateMember(req.MemberID, req.InstanceID); err != nil {
		return err
	}
	if req.Generation != g.generation {
		return ErrIllegalGeneration
	}
	m := g.byID[req.MemberID]
	switch g.state {
	case Empty:
		return ErrUnknownMemberID
	case PreparingRebalance:
		c.resetSession(m, now)
		return ErrRebalanceInProgress
	default: // CompletingRebalance (heartbeats may start right after JoinGroup), Stable
		c.resetSession(m, now)
		return nil
	}
}

func (c *core) leave(now time.Time, groupID string, leaving []LeaveMember) ([]error, error) {
	if groupID == "" {
		return nil, ErrInvalidGroupID
	}
	errs := make([]error, len(leaving))
	g := c.groups[groupID]
	if g == nil {
		for i := range errs {
			errs[i] = ErrUnknownMemberID
		}
		return errs, nil
	}
	if g.state == Dead {
		return nil, ErrCoordinatorNotAvailable
	}
	for i, lm := range leaving {
		reason := "left the group"
		if lm.Reason != "" {
			reason += ": " + lm.Reason
		}
		switch {
		case lm.MemberID == "":
			// Administrative removal of a static member by instance id.
			if lm.InstanceID == nil {
				errs[i] = ErrUnknownMemberID
			} else if id, ok := g.static[*lm.InstanceID]; ok {
				c.removeMember(now, g, g.byID[id], reason)
			} else {
				errs[i] = ErrUnknownMemberID
			}
		case g.isPending(lm.MemberID):
			c.removePending(now, g, lm.MemberID)
		default:
			if err := g.validateMember(lm.MemberID, lm.InstanceID); err != nil {
				errs[i] = err
			} else {
				c.removeMember(now, g, g.byID[lm.MemberID], reason)
			}
		}
	}
	return errs, nil
}

// ---- deadlines ----

// tick processes every deadline that has passed. It scans only when now
// has reached wake, and leaves wake at the earliest remaining deadline.
func (c *core) tick(now time.Time) {
	for i := 0; i < 4 && !c.wake.IsZero() && !now.Before(c.wake); i++ {
		c.wake = time.Time{}
		if !now.Before(c.nextSweep) {
			c.expireOffsets(now)
			c.nextSweep = now.Add(c.cfg.OffsetsRetentionCheckInterval)
		}
		c.schedule(c.nextSweep)
		for _, id := range sortedKeys(c.groups) {
			if g := c.groups[id]; g != nil {
				c.tickGroup(now, g)
			}
		}
	}
}

func (c *core) tickGroup(now time.Time, g *group) {
	for _, id := range sortedKeys(g.pending) {
		if dl := g.pending[id]; now.Before(dl) {
			c.schedule(dl)
		} else {
			c.log.Info("pending group member expired", "group", g.id, "member", id)
			c.removePending(now, g, id)
		}
	}
	for _, m := range append([]*member(nil), g.members...) {
		if g.byID[m.id] != m || m.keptAlive() {
			continue
		}
		if now.Before(m.deadline) {
			c.schedule(m.deadline)
			continue
		}
		c.removeMember(now, g, m, "session timed out")
	}
	if g.state == PreparingRebalance && !g.joinDeadline.IsZero() {
		if now.Before(g.joinDeadline) {
			c.schedule(g.joinDeadline)
		} else {
			c.joinDeadlinePassed(now, g)
		}
	}
	if !g.syncDeadline.IsZero() {
		if now.Before(g.syncDeadline) {
			c.schedule(g.syncDeadline)
		} else {
			c.syncDeadlinePassed(now, g)
		}
	}
}

// ---- unloading ----

// unload answers everything parked with err (the partition moves away or
// the broker stops) and forgets the groups.
func (c *core) unload(now time.Time, err error) {
	for _, id := range sortedKeys(c.groups) {
		g := c.groups[id]
		for _, m := range g.members {
			c.answerJoin(m, joinError(m.id, err), now)
			c.answerSync(m, SyncResult{Err: err}, now)
		}
	}
	c.groups = map[string]*group{}
	c.wake = time.Time{}
}
