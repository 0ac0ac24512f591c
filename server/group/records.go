package group

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetsTopic is the internal compacted topic holding committed offsets
// and group metadata.
const OffsetsTopic = "__consumer_offsets"

// Record is one record of an __consumer_offsets partition: a key and a
// value in Apache Kafka's schemas; a nil Value is a tombstone.
//
//	key version 0, 1  OffsetCommitKey     (group, topic, partition)  → OffsetCommitValue (written: v3)
//	key version 2     GroupMetadataKey    (group)                    → GroupMetadataValue (written: v3)
//
// kvlog writes OffsetCommitKey v1 / OffsetCommitValue v3 and
// GroupMetadataKey v2 / GroupMetadataValue v3, as Kafka 2.3+ does, so
// Kafka's tools read kvlog's topic and kvlog replays Kafka's (other key
// versions, e.g. Kafka 3.7+'s new group types, are skipped).
type Record struct {
	Key   []byte
	Value []byte
	// Set by Replay only. Transactional: the record is a transactional
	// offset commit (TxnOffsetCommit) of ProducerID, pending until that
	// producer's marker. Marker (Key and Value nil): a commit or abort
	// marker of ProducerID's transaction.
	ProducerID    int64
	Transactional bool
	Marker        Marker
}

// Marker is the kind of a transaction marker met in replay.
type Marker int8

const (
	NoMarker Marker = iota
	CommitMarker
	AbortMarker
)

const (
	offsetKeyVersion   = 1
	offsetValueVersion = 3
	groupKeyVersion    = 2
	groupValueVersion  = 3
)

func offsetKey(group string, tp TopicPartition) []byte {
	k := kmsg.OffsetCommitKey{Version: offsetKeyVersion, Group: group, Topic: tp.Topic, Partition: tp.Partition}
	return k.AppendTo(nil)
}

func offsetValue(o *offsetEntry) []byte {
	v := kmsg.NewOffsetCommitValue()
	v.Version = offsetValueVersion
	v.Offset = o.offset
	v.LeaderEpoch = o.leaderEpoch
	v.Metadata = o.metadata
	v.CommitTimestamp = o.commitTime.UnixMilli()
	return v.AppendTo(nil)
}

func groupKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: groupKeyVersion, Group: group}
	return k.AppendTo(nil)
}

// groupValue encodes g's metadata with the assignment given per member.
func groupValue(g *group, assignment func(*member) []byte) []byte {
	v := kmsg.NewGroupMetadataValue()
	v.Version = groupValueVersion
	v.ProtocolType = g.protocolType
	v.Generation = g.generation
	v.Protocol = g.protocolPtr()
	if g.leader != "" {
		l := g.leader
		v.Leader = &l
	}
	v.CurrentStateTimestamp = g.stateSince.UnixMilli()
	for _, m := range g.members {
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID = m.id
		vm.InstanceID = m.instanceID
		vm.ClientID = m.clientID
		vm.ClientHost = m.clientHost
		vm.RebalanceTimeoutMillis = int32(m.rebalanceTimeout.Milliseconds())
		vm.SessionTimeoutMillis = int32(m.sessionTimeout.Milliseconds())
		vm.Subscription = m.metadata(g.protocol)
		vm.Assignment = assignment(m)
		if vm.Subscription == nil {
			vm.Subscription = []byte{}
		}
		if vm.Assignment == nil {
			vm.Assignment = []byte{}
		}
		v.Members = append(v.Members, vm)
	}
	return v.AppendTo(nil)
}

// recordKind is what a key holds.
type recordKind int8

const (
	kindUnknown recordKind = iota
	kindOffset
	kindGroup
)

// decodeKey reads a record key. Unknown versions are kindUnknown with no
// error (skipped on replay); malformed known keys are errors.
func decodeKey(b []byte) (kind recordKind, group string, tp TopicPartition, err error) {
	if len(b) < 2 {
		return kindUnknown, "", tp, fmt.Errorf("key of %d bytes", len(b))
	}
	switch v := int16(binary.BigEndian.Uint16(b)); v {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(b); err != nil {
			return kindUnknown, "", tp, fmt.Errorf("offset commit key: %w", err)
		}
		return kindOffset, k.Group, TopicPartition{k.Topic, k.Partition}, nil
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(b); err != nil {
			return kindUnknown, "", tp, fmt.Errorf("group metadata key: %w", err)
		}
		return kindGroup, k.Group, tp, nil
	default:
		return kindUnknown, "", tp, nil
	}
}

func decodeOffsetValue(b []byte) (*offsetEntry, error) {
	var v kmsg.OffsetCommitValue
	if err := v.ReadFrom(b); err != nil {
		return nil, fmt.Errorf("offset commit value: %w", err)
	}
	o := &offsetEntry{
		offset:      v.Offset,
		leaderEpoch: -1,
		metadata:    v.Metadata,
		commitTime:  time.UnixMilli(v.CommitTimestamp),
	}
	if v.Version >= 3 {
		o.leaderEpoch = v.LeaderEpoch
	}
	if v.Version == 1 && v.ExpireTimestamp >= 0 {
		o.expireTime = time.UnixMilli(v.ExpireTimestamp)
	}
	return o, nil
}

func decodeGroupValue(b []byte) (*kmsg.GroupMetadataValue, error) {
	v := new(kmsg.GroupMetadataValue)
	if err := v.ReadFrom(b); err != nil {
		return nil, fmt.Errorf("group metadata value: %w", err)
	}
	// The decoded byte slices may alias b, which the caller reuses.
	for i := range v.Members {
		v.Members[i].Subscription = bytes.Clone(v.Members[i].Subscription)
		v.Members[i].Assignment = bytes.Clone(v.Members[i].Assignment)
	}
	return v, nil
}
