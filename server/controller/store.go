package controller

import (
	"github.com/go-zookeeper/zk"

	"github.com/kvlog/kvlog/server/zkstore"
)

// Store is what the controller reads and writes in the metadata store: the
// election of /controller with the controller epoch, the broker
// registrations, the topics' assignments and partition states, the ISR
// change notifications and the topic deletion marks. *zkstore.Store
// implements it on ZooKeeper; the tests use an in-memory twin.
//
// # Watches
//
// The methods whose name says so (and Brokers, TopicNames, ControllerID)
// also return a watch: a channel that receives one event (and is closed)
// the first time what was read changes after the read. Every call sets a
// new watch; each one fires once, whatever its event type says, including
// when the session expires (go-zookeeper's EventNotWatching). A nil channel
// is no watch. Events of one session are delivered in the order of the
// changes; the controller only uses them as "read again".
//
// # Sessions
//
// Ephemeral znodes (/controller, /brokers/ids/<id>) belong to the store's
// session: they go away when it expires. The store then opens a new session
// (every watch of the old one fires) and runs the OnNewSession callbacks.
//
// # Fencing
//
// Controller writes (WritePartitionStates) carry the
// Fence returned by Elect: they fail with an error wrapping
// zkstore.ErrFenced once /controller_epoch has moved past it (another
// controller was elected), whatever else is wrong with them.
type Store interface {
	// OnNewSession registers fn to run, on its own goroutine, each time a
	// new session replaces an expired one.
	OnNewSession(fn func())

	// ControllerID reads /controller: the controller's broker id, -1 when
	// there is none, with a watch on /controller (its creation, deletion
	// or change).
	ControllerID() (int32, <-chan zk.Event, error)
	// Elect creates the ephemeral /controller for brokerID and bumps
	// /controller_epoch in one atomic step, returning the new epoch and
	// the version of /controller_epoch that fences the writes of this
	// term. zkstore.ErrNotElected when /controller exists.
	Elect(brokerID int32) (zkstore.Fence, error)
	// Resign deletes /controller when this session holds it (nothing
	// otherwise; errors are only logged by the caller).
	Resign() error

	// Brokers reads the registrations, sorted by id, each with its broker
	// epoch (the registration's czxid: larger for a later registration),
	// with a watch on the set of registrations.
	Brokers() ([]zkstore.Broker, <-chan zk.Event, error)
	// BrokerRegistration reads one registration: its epoch, whether it
	// exists, and whether this session owns it.
	BrokerRegistration(id int32) (epoch int64, exists, own bool, err error)

	// TopicNames lists the topics (sorted) with a watch on the list.
	TopicNames() ([]string, <-chan zk.Event, error)
	// AssignmentW reads a topic's replica assignment with a watch on it;
	// an error when the topic does not exist.
	AssignmentW(name string) (zkstore.TopicAssignment, <-chan zk.Event, error)

	// PartitionStates reads the states of tps (states[i], ok[i] are
	// tps[i]'s; ok false when it has none yet), each with its znode version
	// in ZkVersion. The reads may be pipelined.
	PartitionStates(tps []zkstore.TopicPartition) (states []zkstore.PartitionState, ok []bool, err error)
	// WritePartitionStates applies many fenced writes at once: a
	// partition's first state (Create: its znode version is then 0) or a
	// replacement if its znode version is still State.ZkVersion. versions[i]
	// and errs[i] answer ws[i]: the new version, or zkstore.ErrBadVersion
	// (the version moved: a leader changed the ISR), an error wrapping
	// zk.ErrNodeExists (the state exists already) or another error. err
	// wraps zkstore.ErrFenced once /controller_epoch moved past f (then
	// some writes may be done, none after the fence moved).
	WritePartitionStates(f zkstore.Fence, ws []zkstore.StateWrite) (versions []int32, errs []error, err error)

	// ISRChangesW lists the pending ISR change notifications (sorted, so
	// oldest first) with a watch on the list.
	ISRChangesW() ([]string, <-chan zk.Event, error)
	// TakeISRChange reads and deletes one notification (nothing when it
	// is gone already).
	TakeISRChange(name string) ([]zkstore.TopicPartition, error)

	// PendingDeletionsW lists the topics marked for deletion (sorted) with
	// a watch on the list.
	PendingDeletionsW() ([]string, <-chan zk.Event, error)
	// DeletionDone removes a topic's assignment, partition states, config
	// and deletion mark.
	DeletionDone(name string) error
}

var _ Store = (*zkstore.Store)(nil)
