package zkstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// ---- brokers ----

// RegisterBroker creates the ephemeral /brokers/ids/<id> and returns the
// broker epoch (its czxid). When the znode exists it waits (up to twice the
// session timeout) for it to go away, as it does when a previous
// incarnation's session expires after a crash; a live broker holding the id
// gives ErrBrokerIDTaken. A znode owned by this very session (a retry) is
// accepted.
func (s *Store) RegisterBroker(b Broker) (int64, error) {
	data, err := encodeBroker(b, s.opts.Now().UnixMilli())
	if err != nil {
		return 0, err
	}
	full := s.p(brokerPath(b.ID))
	deadline := time.Now().Add(2 * s.opts.SessionTimeout)
	for {
		_, err := s.conn.Create(full, data, zk.FlagEphemeral, s.acl(brokerPath(b.ID)))
		if err == nil {
			_, st, err := s.get(full)
			if err != nil {
				return 0, fmt.Errorf("zkstore: read registration: %w", err)
			}
			return st.Czxid, nil
		}
		if !errors.Is(err, zk.ErrNodeExists) {
			return 0, fmt.Errorf("zkstore: register broker %d: %w", b.ID, err)
		}
		ok, st, ch, err := s.existsW(full)
		if err != nil {
			return 0, fmt.Errorf("zkstore: register broker %d: %w", b.ID, err)
		}
		if ok && st.EphemeralOwner == s.conn.SessionID() {
			return st.Czxid, nil
		}
		if !ok {
			continue
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return 0, fmt.Errorf("%w: broker id %d (znode %s owned by session 0x%x)", ErrBrokerIDTaken, b.ID, full, st.EphemeralOwner)
		}
		s.log.Info("broker id is registered by another session; waiting for it to expire", "broker", b.ID, "owner_session", fmt.Sprintf("0x%x", st.EphemeralOwner))
		select {
		case <-ch:
		case <-time.After(wait):
		}
	}
}

// UnregisterBroker deletes this broker's registration (clean shutdown).
func (s *Store) UnregisterBroker(id int32) error {
	err := s.conn.Delete(s.p(brokerPath(id)), -1)
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	return nil
}

// Brokers reads every registration and returns a watch on the set.
func (s *Store) Brokers() ([]Broker, <-chan zk.Event, error) {
	names, _, ch, err := s.childrenW(s.p(pathBrokerIDs))
	if err != nil {
		return nil, nil, fmt.Errorf("zkstore: list brokers: %w", err)
	}
	var out []Broker
	for _, n := range names {
		id, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		data, st, err := s.get(s.p(pathBrokerIDs + "/" + n))
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("zkstore: read broker %s: %w", n, err)
		}
		b, err := decodeBroker(int32(id), data)
		if err != nil {
			s.log.Error("skipping unreadable broker registration", "broker", n, "err", err)
			continue
		}
		b.Epoch = st.Czxid
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, ch, nil
}

// ---- controller ----

// Fence identifies a controller's term: its epoch and the /controller_epoch
// znode version its writes are conditional on.
type Fence struct {
	Epoch     int32
	ZkVersion int32
}

// ControllerID reads /controller (-1 when there is none) with a watch.
func (s *Store) ControllerID() (int32, <-chan zk.Event, error) {
	data, _, ch, err := s.getW(s.p(pathController))
	if errors.Is(err, zk.ErrNoNode) {
		ok, _, ch, err := s.existsW(s.p(pathController))
		if err != nil {
			return -1, nil, err
		}
		if ok { // created in between: read again next time
			return -1, closedEvent(), nil
		}
		return -1, ch, nil
	}
	if err != nil {
		return -1, nil, err
	}
	var j controllerJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return -1, ch, fmt.Errorf("zkstore: bad /controller %q", data)
	}
	return j.BrokerID, ch, nil
}

func closedEvent() <-chan zk.Event {
	ch := make(chan zk.Event, 1)
	ch <- zk.Event{Type: zk.EventNotWatching}
	return ch
}

// ControllerEpoch reads /controller_epoch (0, -1 when absent).
func (s *Store) ControllerEpoch() (Fence, error) {
	data, st, err := s.get(s.p(pathControllerEpoc))
	if errors.Is(err, zk.ErrNoNode) {
		return Fence{Epoch: 0, ZkVersion: -1}, nil
	}
	if err != nil {
		return Fence{}, err
	}
	e, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return Fence{}, fmt.Errorf("zkstore: bad /controller_epoch %q", data)
	}
	return Fence{Epoch: int32(e), ZkVersion: st.Version}, nil
}

// Elect tries to become the controller: in one multi, create the ephemeral
// /controller and bump /controller_epoch conditionally on its version.
// ErrNotElected when another broker holds /controller.
func (s *Store) Elect(brokerID int32) (Fence, error) {
	for attempt := 0; attempt < 10; attempt++ {
		cur, err := s.ControllerEpoch()
		if err != nil {
			return Fence{}, err
		}
		if cur.ZkVersion < 0 {
			if err := s.createPersistent(s.p(pathControllerEpoc), []byte("0"), s.acl(pathControllerEpoc)); err != nil {
				return Fence{}, err
			}
			continue
		}
		b, _ := json.Marshal(controllerJSON{Version: 1, BrokerID: brokerID, Timestamp: strconv.FormatInt(s.opts.Now().UnixMilli(), 10)})
		next := cur.Epoch + 1
		res, err := s.conn.Multi(
			&zk.CreateRequest{Path: s.p(pathController), Data: b, Acl: s.acl(pathController), Flags: zk.FlagEphemeral},
			&zk.SetDataRequest{Path: s.p(pathControllerEpoc), Data: []byte(strconv.Itoa(int(next))), Version: cur.ZkVersion},
		)
		switch {
		case err == nil:
			return Fence{Epoch: next, ZkVersion: res[1].Stat.Version}, nil
		case errors.Is(err, zk.ErrNodeExists):
			return Fence{}, ErrNotElected
		case errors.Is(err, zk.ErrBadVersion):
			continue // another election bumped the epoch in between
		default:
			return Fence{}, fmt.Errorf("zkstore: controller election: %w", err)
		}
	}
	return Fence{}, errors.New("zkstore: controller election kept conflicting")
}

// ControllerView is who the metadata store says the controller is: the
// broker id in /controller (-1 when there is none) and /controller_epoch.
type ControllerView struct {
	ID    int32
	Epoch int32
}

// CurrentController reads /controller and /controller_epoch after a sync
// (so this session sees at least what any other session wrote before the
// call). The two are read as a consistent pair: every election creates
// /controller and bumps /controller_epoch in one multi, so when the epoch
// is the same before and after reading /controller, that id belongs to that
// epoch (or the controller has gone: -1).
func (s *Store) CurrentController() (ControllerView, error) {
	if err := s.sync(s.p(pathControllerEpoc)); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return ControllerView{}, fmt.Errorf("zkstore: sync /controller_epoch: %w", err)
	}
	for attempt := 0; attempt < 10; attempt++ {
		before, err := s.ControllerEpoch()
		if err != nil {
			return ControllerView{}, err
		}
		id := int32(-1)
		data, _, err := s.get(s.p(pathController))
		switch {
		case errors.Is(err, zk.ErrNoNode):
		case err != nil:
			return ControllerView{}, fmt.Errorf("zkstore: read /controller: %w", err)
		default:
			var j controllerJSON
			if err := json.Unmarshal(data, &j); err != nil {
				return ControllerView{}, fmt.Errorf("zkstore: bad /controller %q", data)
			}
			id = j.BrokerID
		}
		after, err := s.ControllerEpoch()
		if err != nil {
			return ControllerView{}, err
		}
		if before == after {
			return ControllerView{ID: id, Epoch: after.Epoch}, nil
		}
	}
	return ControllerView{}, errors.New("zkstore: controller kept changing while being read")
}

// BrokerRegistration reads /brokers/ids/<id>: its broker epoch (czxid),
// whether it exists, and whether this session owns it.
func (s *Store) BrokerRegistration(id int32) (epoch int64, exists, own bool, err error) {
	_, st, err := s.get(s.p(brokerPath(id)))
	if errors.Is(err, zk.ErrNoNode) {
		return 0, false, false, nil
	}
	if err != nil {
		return 0, false, false, fmt.Errorf("zkstore: read registration of broker %d: %w", id, err)
	}
	return st.Czxid, true, st.EphemeralOwner == s.conn.SessionID(), nil
}

// Resign deletes /controller if this session holds it.
func (s *Store) Resign() error {
	_, st, err := s.get(s.p(pathController))
	if err != nil {
		return nil
	}
	if st.EphemeralOwner != s.conn.SessionID() {
		return nil
	}
	return s.conn.Delete(s.p(pathController), st.Version)
}

// fenced runs ops after a version check on /controller_epoch.
func (s *Store) fenced(f Fence, ops ...any) ([]zk.MultiResponse, error) {
	all := append([]any{&zk.CheckVersionRequest{Path: s.p(pathControllerEpoc), Version: f.ZkVersion}}, ops...)
	res, err := s.conn.Multi(all...)
	if err != nil {
		if len(res) > 0 && errors.Is(res[0].Error, zk.ErrBadVersion) {
			return nil, ErrFenced
		}
		for _, r := range res[1:] {
			if errors.Is(r.Error, zk.ErrBadVersion) {
				return nil, ErrBadVersion
			}
		}
		if errors.Is(err, zk.ErrBadVersion) {
			return nil, ErrFenced
		}
		return nil, err
	}
	return res[1:], nil
}

// ---- partition states ----

// PartitionState reads a partition's state (ok false when absent).
func (s *Store) PartitionState(topic string, p int32) (PartitionState, bool, error) {
	data, st, err := s.get(s.p(statePath(topic, p)))
	if errors.Is(err, zk.ErrNoNode) {
		return PartitionState{}, false, nil
	}
	if err != nil {
		return PartitionState{}, false, err
	}
	ps, err := decodeState(data, st.Version)
	return ps, err == nil, err
}

// CreatePartitionState creates a new partition's state (controller, fenced).
func (s *Store) CreatePartitionState(f Fence, topic string, p int32, st PartitionState) (int32, error) {
	for _, dir := range []string{partitionsPath(topic), partitionPath(topic, p)} {
		if err := s.createPersistent(s.p(dir), nil, s.acl(dir)); err != nil {
			return 0, fmt.Errorf("zkstore: create %s: %w", dir, err)
		}
	}
	data, err := encodeState(st)
	if err != nil {
		return 0, err
	}
	if _, err := s.fenced(f, &zk.CreateRequest{Path: s.p(statePath(topic, p)), Data: data, Acl: s.acl(statePath(topic, p))}); err != nil {
		if errors.Is(err, zk.ErrNodeExists) {
			return 0, err
		}
		return 0, fmt.Errorf("zkstore: create state of %s-%d: %w", topic, p, err)
	}
	return 0, nil
}

// SetPartitionState writes a partition's state conditionally on its znode
// version (controller, fenced). It returns the new version.
func (s *Store) SetPartitionState(f Fence, topic string, p int32, st PartitionState) (int32, error) {
	data, err := encodeState(st)
	if err != nil {
		return 0, err
	}
	res, err := s.fenced(f, &zk.SetDataRequest{Path: s.p(statePath(topic, p)), Data: data, Version: st.ZkVersion})
	if err != nil {
		return 0, err
	}
	return res[0].Stat.Version, nil
}

// UpdateISR is a leader's ISR change: a conditional set on the state's znode
// version (st.ZkVersion), not fenced by the controller epoch (Kafka's
// pre-AlterIsr path). ErrBadVersion when the state changed; the caller
// re-reads it. It also announces the change under
// /isr_change_notification so the controller refreshes the brokers'
// metadata.
func (s *Store) UpdateISR(topic string, p int32, st PartitionState) (int32, error) {
	data, err := encodeState(st)
	if err != nil {
		return 0, err
	}
	note, _ := json.Marshal(isrChangeJSON{Version: 1, Partitions: []tpJSON{{Topic: topic, Partition: p}}})
	res, err := s.conn.Multi(
		&zk.SetDataRequest{Path: s.p(statePath(topic, p)), Data: data, Version: st.ZkVersion},
		&zk.CreateRequest{Path: s.p(pathISRChanges + "/" + isrChangePrefix), Data: note, Acl: s.acl(pathISRChanges), Flags: zk.FlagSequence},
	)
	if err != nil {
		if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) {
			return 0, ErrBadVersion
		}
		return 0, fmt.Errorf("zkstore: update ISR of %s-%d: %w", topic, p, err)
	}
	return res[0].Stat.Version, nil
}

// ISRChangesW lists the ISR change notifications with a watch.
func (s *Store) ISRChangesW() ([]string, <-chan zk.Event, error) {
	names, _, ch, err := s.childrenW(s.p(pathISRChanges))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(names)
	return names, ch, nil
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// TakeISRChange reads and deletes one notification.
func (s *Store) TakeISRChange(name string) ([]TopicPartition, error) {
	full := s.p(pathISRChanges + "/" + name)
	data, _, err := s.get(full)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	_ = s.conn.Delete(full, -1)
	var j isrChangeJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, nil
	}
	out := make([]TopicPartition, 0, len(j.Partitions))
	for _, tp := range j.Partitions {
		out = append(out, TopicPartition{tp.Topic, tp.Partition})
	}
	return out, nil
}

// TakeConfigChange reads and deletes one config change notification,
// returning its entity path ("topics/<t>", "brokers/<id>").
func (s *Store) TakeConfigChange(name string) (string, error) {
	full := s.p(pathConfigChanges + "/" + name)
	data, _, err := s.get(full)
	if errors.Is(err, zk.ErrNoNode) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var j configChangeJSON
	_ = json.Unmarshal(data, &j)
	return j.EntityPath, nil
}

// DeleteConfigChange deletes one config change notification.
func (s *Store) DeleteConfigChange(name string) {
	_ = s.conn.Delete(s.p(pathConfigChanges+"/"+name), -1)
}

// AssignmentW reads a topic's assignment with a data watch.
func (s *Store) AssignmentW(name string) (TopicAssignment, <-chan zk.Event, error) {
	data, st, ch, err := s.getW(s.p(topicPath(name)))
	if errors.Is(err, zk.ErrNoNode) {
		return TopicAssignment{}, nil, fmt.Errorf("%w: %s", errUnknown, name)
	}
	if err != nil {
		return TopicAssignment{}, nil, err
	}
	a, err := decodeAssignment(name, data)
	a.Version = st.Version
	return a, ch, err
}

var errUnknown = errors.New("zkstore: unknown topic")
