package group

import (
	"bytes"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Loading: a partition's groups and offsets are rebuilt by replaying its
// records in offset order; the latest record per key wins and a tombstone
// deletes the key (the same answer the log cleaner's compaction keeps).

// loader accumulates a replay.
type loader struct {
	metas   map[string]*kmsg.GroupMetadataValue // nil value: deleted
	offsets map[string]map[TopicPartition]*offsetEntry
	// txn are transactional offset commits by producer id, waiting for
	// the producer's marker (what is left at the end stays pending).
	txn     map[int64]map[string]map[TopicPartition]*offsetEntry
	seq     uint64 // records seen: the log order of offsetEntry.seq
	skipped int
}

func newLoader() *loader {
	return &loader{metas: map[string]*kmsg.GroupMetadataValue{}, offsets: map[string]map[TopicPartition]*offsetEntry{},
		txn: map[int64]map[string]map[TopicPartition]*offsetEntry{}}
}

// marker applies a transaction marker: the producer's pending offsets are
// committed (unless a later commit of the partition was read) or dropped.
func (l *loader) marker(pid int64, commit bool) {
	pending := l.txn[pid]
	delete(l.txn, pid)
	if !commit {
		return
	}
	for groupID, offs := range pending {
		cur := l.offsets[groupID]
		if cur == nil {
			cur = map[TopicPartition]*offsetEntry{}
			l.offsets[groupID] = cur
		}
		for tp, e := range offs {
			if c := cur[tp]; c == nil || c.seq < e.seq {
				cur[tp] = e
			}
		}
	}
}

// add applies one record. Records the coordinator cannot read are counted
// and skipped: a broken record must not keep the broker from starting.
func (l *loader) add(r Record) {
	l.seq++
	if r.Marker != NoMarker {
		l.marker(r.ProducerID, r.Marker == CommitMarker)
		return
	}
	kind, groupID, tp, err := decodeKey(r.Key)
	if err != nil || kind == kindUnknown {
		l.skipped++
		return
	}
	switch kind {
	case kindOffset:
		offs := l.offsets[groupID]
		if r.Value == nil {
			// A tombstone (OffsetDelete, expiry, a deleted topic) also
			// drops the partition's pending transactional offsets read
			// before it, as Kafka's GroupMetadata.removeOffsets does
			// live: their marker must not bring the offset back.
			delete(offs, tp)
			if !r.Transactional {
				for _, byGroup := range l.txn {
					delete(byGroup[groupID], tp)
				}
			}
			return
		}
		e, err := decodeOffsetValue(r.Value)
		if err != nil {
			l.skipped++
			return
		}
		e.seq = l.seq
		if r.Transactional {
			byGroup := l.txn[r.ProducerID]
			if byGroup == nil {
				byGroup = map[string]map[TopicPartition]*offsetEntry{}
				l.txn[r.ProducerID] = byGroup
			}
			if byGroup[groupID] == nil {
				byGroup[groupID] = map[TopicPartition]*offsetEntry{}
			}
			byGroup[groupID][tp] = e
			return
		}
		if offs == nil {
			offs = map[TopicPartition]*offsetEntry{}
			l.offsets[groupID] = offs
		}
		offs[tp] = e
	case kindGroup:
		if r.Value == nil {
			l.metas[groupID] = nil
			return
		}
		v, err := decodeGroupValue(r.Value)
		if err != nil {
			l.skipped++
			return
		}
		l.metas[groupID] = v
	}
}

// install builds the groups into c: a group with stored members is Stable
// (its members get a fresh session), one without is Empty, and offsets
// without group metadata form an Empty group that only stores offsets.
func (l *loader) install(c *core, now time.Time) {
	for id, v := range l.metas {
		if v == nil {
			continue
		}
		g := newGroup(id, now)
		g.protocolType = v.ProtocolType
		g.generation = v.Generation
		if v.CurrentStateTimestamp > 0 {
			g.stateSince = time.UnixMilli(v.CurrentStateTimestamp)
		}
		if v.Protocol != nil && len(v.Members) > 0 {
			g.protocol = *v.Protocol
			for _, vm := range v.Members {
				rebalance := vm.RebalanceTimeoutMillis
				if rebalance < 0 {
					rebalance = vm.SessionTimeoutMillis
				}
				m := &member{
					id:               vm.MemberID,
					instanceID:       vm.InstanceID,
					clientID:         vm.ClientID,
					clientHost:       vm.ClientHost,
					protocolType:     v.ProtocolType,
					protocols:        []Protocol{{Name: g.protocol, Metadata: bytes.Clone(vm.Subscription)}},
					sessionTimeout:   time.Duration(vm.SessionTimeoutMillis) * time.Millisecond,
					rebalanceTimeout: time.Duration(rebalance) * time.Millisecond,
					assignment:       bytes.Clone(vm.Assignment),
				}
				g.add(m)
				c.resetSession(m, now)
			}
			if v.Leader != nil && g.byID[*v.Leader] != nil {
				g.leader = *v.Leader
			}
			g.state = Stable
			g.computeSubscribed()
		}
		c.groups[id] = g
	}
	for id, offs := range l.offsets {
		if len(offs) == 0 {
			continue
		}
		g := c.groups[id]
		if g == nil {
			g = newGroup(id, now)
			c.groups[id] = g
		}
		g.offsets = offs
	}
	for pid, byGroup := range l.txn {
		for id, offs := range byGroup {
			g := c.groups[id]
			if g == nil {
				g = newGroup(id, now)
				c.groups[id] = g
			}
			for tp, e := range offs {
				g.addTxnOffset(pid, tp, e)
			}
		}
	}
	c.commitSeq = l.seq
	c.nextSweep = now.Add(c.cfg.OffsetsRetentionCheckInterval)
	c.schedule(c.nextSweep)
}
