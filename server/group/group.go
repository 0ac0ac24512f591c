package group

import (
	"encoding/binary"
	"slices"
	"sort"
	"time"
)

// ConsumerProtocolType is the protocol type of Kafka consumers, whose
// member metadata lists the subscribed topics.
const ConsumerProtocolType = "consumer"

// group is one group's membership, generation and committed offsets.
type group struct {
	// pendingCommits counts offsets appended but not yet installed
	// (core.installCommits), so the group is not forgotten meanwhile.
	pendingCommits int
	id             string
	state          State
	stateSince     time.Time // Kafka's currentStateTimestamp

	protocolType string // "" until a member joins: a group that only stores offsets
	protocol     string // the selected protocol; "" when none
	generation   int32
	leader       string

	members   []*member // in join order (deterministic iteration)
	byID      map[string]*member
	static    map[string]string    // instance id → member id
	pending   map[string]time.Time // MEMBER_ID_REQUIRED ids → expiry
	supported map[string]int       // protocol name → members supporting it

	// Join phase (PreparingRebalance).
	joinDeadline   time.Time
	initialJoin    bool          // the first rebalance of an empty group: no early completion
	joinRemaining  time.Duration // how much longer the initial delay may still be extended
	newMemberAdded bool

	// Members that have not sent SyncGroup since the join phase ended; at
	// syncDeadline those still missing are removed and the group
	// rebalances.
	pendingSync    map[string]bool
	syncDeadline   time.Time
	syncGeneration int32

	offsets map[TopicPartition]*offsetEntry
	// txnOffsets are transactional offset commits (TxnOffsetCommit) by
	// producer id, durable but pending until the producer's marker:
	// applied to offsets at a commit, dropped at an abort.
	txnOffsets map[int64]map[TopicPartition]*offsetEntry

	// subscribed is the union of the members' subscribed topics for a
	// consumer group (nil: unknown).
	subscribed map[string]bool
}

// offsetEntry is one committed offset.
type offsetEntry struct {
	offset      int64
	leaderEpoch int32
	metadata    string
	commitTime  time.Time
	expireTime  time.Time // zero: none (set only by old OffsetCommitValue v1 records)
	// seq orders commits in log order (core.commitSeq when written; the
	// record's position when loaded by replay), so a commit made visible
	// late (a commit, or a transactional one at its marker) never
	// replaces a later one.
	seq uint64
}

func newGroup(id string, now time.Time) *group {
	return &group{
		id:         id,
		state:      Empty,
		stateSince: now,
		byID:       map[string]*member{},
		static:     map[string]string{},
		pending:    map[string]time.Time{},
		supported:  map[string]int{},
		offsets:    map[TopicPartition]*offsetEntry{},
	}
}

func (g *group) transition(to State, now time.Time) {
	if !canTransition(g.state, to) {
		panic("group " + g.id + ": illegal transition " + g.state.String() + " → " + to.String())
	}
	g.state = to
	g.stateSince = now
}

// add adds m. The first member fixes the protocol type and becomes leader
// if there is none.
func (g *group) add(m *member) {
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	if g.leader == "" {
		g.leader = m.id
	}
	g.members = append(g.members, m)
	g.byID[m.id] = m
	if m.instanceID != nil {
		g.static[*m.instanceID] = m.id
	}
	g.countProtocols(m, 1)
	delete(g.pending, m.id)
}

// remove drops member id (its callbacks must have been answered). The
// leader passes to the first remaining member.
func (g *group) remove(id string) {
	m := g.byID[id]
	if m == nil {
		return
	}
	g.countProtocols(m, -1)
	delete(g.byID, id)
	g.members = slices.DeleteFunc(g.members, func(x *member) bool { return x == m })
	if m.instanceID != nil && g.static[*m.instanceID] == id {
		delete(g.static, *m.instanceID)
	}
	delete(g.pendingSync, id)
	if g.leader == id {
		g.leader = ""
		if len(g.members) > 0 {
			g.leader = g.members[0].id
		}
	}
}

func (g *group) countProtocols(m *member, delta int) {
	for _, p := range m.protocols {
		g.supported[p.Name] += delta
		if g.supported[p.Name] == 0 {
			delete(g.supported, p.Name)
		}
	}
}

// setProtocols replaces m's protocols and timeouts.
func (g *group) setProtocols(m *member, protocols []Protocol, rebalance, session time.Duration) {
	g.countProtocols(m, -1)
	m.protocols = protocols
	g.countProtocols(m, 1)
	m.rebalanceTimeout = rebalance
	m.sessionTimeout = session
}

// replaceStatic gives the static member of instanceID a new member id.
func (g *group) replaceStatic(instanceID, oldID, newID string) *member {
	m := g.byID[oldID]
	delete(g.byID, oldID)
	m.id = newID
	g.byID[newID] = m
	if g.leader == oldID {
		g.leader = newID
	}
	if g.pendingSync[oldID] {
		delete(g.pendingSync, oldID)
		g.pendingSync[newID] = true
	}
	g.static[instanceID] = newID
	return m
}

func (g *group) isPending(id string) bool {
	_, ok := g.pending[id]
	return ok
}

// supportsProtocols reports whether a member with this protocol type and
// these protocols may join: any non-empty set for an empty group,
// otherwise the group's type and at least one protocol every current
// member supports.
func (g *group) supportsProtocols(protocolType string, protocols []Protocol) bool {
	if g.state == Empty {
		return protocolType != "" && len(protocols) > 0
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		if g.supported[p.Name] == len(g.members) {
			return true
		}
	}
	return false
}

// selectProtocol picks the protocol for the next generation: among the
// protocols every member supports, each member votes for its most
// preferred one and the most votes win; ties go to the protocol the
// earliest-joined voter for it prefers (deterministic).
func (g *group) selectProtocol() string {
	candidates := map[string]bool{}
	for name, n := range g.supported {
		if n == len(g.members) {
			candidates[name] = true
		}
	}
	votes := map[string]int{}
	var order []string
	for _, m := range g.members {
		v := m.vote(candidates)
		if votes[v] == 0 {
			order = append(order, v)
		}
		votes[v]++
	}
	best := ""
	for _, p := range order {
		if best == "" || votes[p] > votes[best] {
			best = p
		}
	}
	return best
}

// allJoined: every member has a parked JoinGroup and no member id handed
// out with MEMBER_ID_REQUIRED is still outstanding.
func (g *group) allJoined() bool {
	if len(g.pending) > 0 {
		return false
	}
	for _, m := range g.members {
		if !m.awaitingJoin() {
			return false
		}
	}
	return true
}

// electJoinedLeader keeps the leader if it rejoined, otherwise makes the
// first member that did leader. False when there is no leader or no
// member rejoined.
func (g *group) electJoinedLeader() bool {
	if g.leader == "" {
		return false
	}
	if g.byID[g.leader].awaitingJoin() {
		return true
	}
	for _, m := range g.members {
		if m.awaitingJoin() {
			g.leader = m.id
			return true
		}
	}
	return false
}

// rebalanceTimeout is the largest rebalance timeout of the members.
func (g *group) rebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

// validateMember checks a request's member id and instance id: a known
// instance id mapped to another member is fenced; an unknown instance id
// or member id is unknown.
func (g *group) validateMember(memberID string, instanceID *string) error {
	if instanceID != nil {
		cur, ok := g.static[*instanceID]
		if !ok {
			return ErrUnknownMemberID
		}
		if cur != memberID {
			return ErrFencedInstanceID
		}
	}
	if g.byID[memberID] == nil {
		return ErrUnknownMemberID
	}
	return nil
}

// joinMembers is the member list sent to the leader.
func (g *group) joinMembers() []JoinMember {
	out := make([]JoinMember, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, JoinMember{MemberID: m.id, InstanceID: m.instanceID, Metadata: m.metadata(g.protocol)})
	}
	return out
}

func (g *group) protocolTypePtr() *string {
	if g.protocolType == "" {
		return nil
	}
	s := g.protocolType
	return &s
}

func (g *group) protocolPtr() *string {
	if g.protocol == "" {
		return nil
	}
	s := g.protocol
	return &s
}

// computeSubscribed collects the topics a consumer group's members
// subscribe to from their metadata for the selected protocol; nil when
// that is not known (not a consumer group, or unparsable metadata).
func (g *group) computeSubscribed() {
	g.subscribed = nil
	if g.protocolType != ConsumerProtocolType {
		return
	}
	subs := map[string]bool{}
	for _, m := range g.members {
		topics, ok := parseSubscription(m.metadata(g.protocol))
		if !ok {
			return
		}
		for _, t := range topics {
			subs[t] = true
		}
	}
	g.subscribed = subs
}

// subscribedTo reports whether the group consumes topic (true when
// unknown, to be safe).
func (g *group) subscribedTo(topic string) bool {
	return g.subscribed == nil || g.subscribed[topic]
}

// parseSubscription reads the version-0 prefix every version of the
// consumer protocol's subscription shares: int16 version, then an array
// of topic names.
func parseSubscription(b []byte) ([]string, bool) {
	if len(b) < 6 {
		return nil, false
	}
	n := int32(binary.BigEndian.Uint32(b[2:]))
	b = b[6:]
	if n < 0 || int(n) > len(b)/2 {
		return nil, false
	}
	topics := make([]string, 0, n)
	for i := int32(0); i < n; i++ {
		if len(b) < 2 {
			return nil, false
		}
		l := int(int16(binary.BigEndian.Uint16(b)))
		b = b[2:]
		if l < 0 || l > len(b) {
			return nil, false
		}
		topics = append(topics, string(b[:l]))
		b = b[l:]
	}
	return topics, true
}

// sortedOffsets lists the group's offsets by topic and partition.
func (g *group) sortedOffsets() []TopicPartition {
	tps := make([]TopicPartition, 0, len(g.offsets))
	for tp := range g.offsets {
		tps = append(tps, tp)
	}
	sortTPs(tps)
	return tps
}

func sortTPs(tps []TopicPartition) {
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
