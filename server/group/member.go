package group

import (
	"bytes"
	"time"
)

// member is one member of a group.
type member struct {
	id           string
	instanceID   *string // static membership (KIP-345)
	clientID     string
	clientHost   string
	protocolType string
	protocols    []Protocol // preference order, names unique

	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration

	assignment []byte

	// joinCB and syncCB are the parked JoinGroup and SyncGroup of the
	// member; every one is answered exactly once (answerJoin, answerSync).
	joinCB func(JoinResult)
	syncCB func(SyncResult)

	// isNew: joined for the first time and still waiting for the join
	// phase to end. Such a member expires after NewMemberJoinTimeout, not
	// its session timeout, and is not kept alive by waiting.
	isNew bool
	// deadline is when the member expires without a heartbeat.
	deadline time.Time
}

func (m *member) awaitingJoin() bool { return m.joinCB != nil }
func (m *member) awaitingSync() bool { return m.syncCB != nil }

// keptAlive reports whether the member is waiting on the coordinator (a
// parked JoinGroup or SyncGroup) and so cannot heartbeat: its session
// does not run out meanwhile. The deadline is reset when it is answered.
func (m *member) keptAlive() bool {
	return !m.isNew && (m.awaitingJoin() || m.awaitingSync())
}

func (m *member) isStatic() bool { return m.instanceID != nil }

// metadata returns the member's metadata for protocol (nil if it does not
// support it).
func (m *member) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

// matches reports whether protocols are exactly the member's current ones
// (same names, metadata and order): a rejoin that changes nothing.
func (m *member) matches(protocols []Protocol) bool {
	if len(protocols) != len(m.protocols) {
		return false
	}
	for i, p := range protocols {
		if p.Name != m.protocols[i].Name || !bytes.Equal(p.Metadata, m.protocols[i].Metadata) {
			return false
		}
	}
	return true
}

// vote is the member's most preferred protocol among candidates.
func (m *member) vote(candidates map[string]bool) string {
	for _, p := range m.protocols {
		if candidates[p.Name] {
			return p.Name
		}
	}
	return ""
}

// uniqueProtocols drops repeated protocol names (keeping the first), so
// that protocol counting sees each name once per member.
func uniqueProtocols(ps []Protocol) []Protocol {
	seen := make(map[string]bool, len(ps))
	out := make([]Protocol, 0, len(ps))
	for _, p := range ps {
		if !seen[p.Name] {
			seen[p.Name] = true
			out = append(out, p)
		}
	}
	return out
}
