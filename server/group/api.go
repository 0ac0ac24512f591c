package group

import "time"

// Requests and results of the coordinator, independent of wire versions:
// the server's handlers translate kmsg requests into these and back.

// Protocol is one protocol a member supports (e.g. an assignor name for
// protocol type "consumer") with its opaque metadata.
type Protocol struct {
	Name     string
	Metadata []byte
}

// JoinRequest is a JoinGroup.
type JoinRequest struct {
	Group      string
	MemberID   string  // "" for a member joining for the first time
	InstanceID *string // group.instance.id (static membership), nil if dynamic
	ClientID   string
	ClientHost string

	ProtocolType string
	Protocols    []Protocol // in the member's order of preference

	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration

	// RequireKnownMemberID asks for the two-step join (JoinGroup v4+): a
	// dynamic member without an id gets MEMBER_ID_REQUIRED and its id, and
	// must join again with it.
	RequireKnownMemberID bool
	// SupportsSkipAssignment (JoinGroup v9+) lets a static leader that
	// rejoins a stable group be told it leads without running its assignor.
	SupportsSkipAssignment bool
	Reason                 string
}

// JoinResult answers a JoinRequest.
type JoinResult struct {
	Err            error
	MemberID       string
	Generation     int32   // -1 on error
	ProtocolType   *string // nil when none
	Protocol       *string // nil when none
	Leader         string
	SkipAssignment bool
	Members        []JoinMember // the whole group, for the leader only
}

// JoinMember is one member as the leader sees it in a JoinGroup response.
type JoinMember struct {
	MemberID   string
	InstanceID *string
	Metadata   []byte // the metadata for the selected protocol
}

// SyncRequest is a SyncGroup.
type SyncRequest struct {
	Group        string
	Generation   int32
	MemberID     string
	InstanceID   *string
	ProtocolType *string // v5+, checked when set
	Protocol     *string // v5+, checked when set
	// Assignments is the leader's assignment by member id (empty from
	// followers).
	Assignments map[string][]byte
}

// SyncResult answers a SyncRequest.
type SyncResult struct {
	Err          error
	ProtocolType *string
	Protocol     *string
	Assignment   []byte
}

// HeartbeatRequest is a Heartbeat.
type HeartbeatRequest struct {
	Group      string
	Generation int32
	MemberID   string
	InstanceID *string
}

// LeaveMember identifies a member leaving: by member id, or by instance id
// alone (MemberID "") to remove a static member administratively.
type LeaveMember struct {
	MemberID   string
	InstanceID *string
	Reason     string
}

// TopicPartition names a partition of a (non-internal) topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// OffsetCommit is one partition's offset to commit.
type OffsetCommit struct {
	TopicPartition
	Offset      int64
	LeaderEpoch int32 // -1 if unknown
	Metadata    string
}

// CommitRequest is an OffsetCommit. Generation -1 with no member id is a
// commit from outside group management (simple consumers, admin tools).
type CommitRequest struct {
	Group      string
	Generation int32
	MemberID   string
	InstanceID *string
	Offsets    []OffsetCommit
}

// CommittedOffset is a committed offset as OffsetFetch returns it; Offset
// -1 means none.
type CommittedOffset struct {
	TopicPartition
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	// Err is ErrUnstableOffsetCommit for a partition with a pending
	// transactional commit when the fetch requires stable offsets.
	Err error
}

// Description is a group as DescribeGroups reports it.
type Description struct {
	Group        string
	State        State
	ProtocolType string
	Protocol     string // "" unless Stable
	Members      []MemberDescription
}

// MemberDescription is one member in a Description; Metadata and
// Assignment are set only for a Stable group.
type MemberDescription struct {
	MemberID   string
	InstanceID *string
	ClientID   string
	ClientHost string
	Metadata   []byte
	Assignment []byte
}

// Listing is a group as ListGroups reports it.
type Listing struct {
	Group        string
	ProtocolType string
	State        State
}
