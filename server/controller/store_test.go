package controller

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kvlog/kvlog/internal/testcluster"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/zkstore"
)

// contractEnv opens sessions of one store and makes the writes that come
// from outside the controller (brokers registering, topics created, leaders
// changing the ISR).
type contractEnv struct {
	session   func(t *testing.T, broker int32) Store
	register  func(t *testing.T, s Store, id int32)
	topic     func(t *testing.T, s Store, name string, replicas [][]int32)
	updateISR func(t *testing.T, s Store, topic string, p int32, st zkstore.PartitionState) error
}

// TestStoreContract checks that the in-memory twin and zkstore.Store keep
// the Store contract the same way (the ZooKeeper half is skipped when no
// ZooKeeper can be started).
func TestStoreContract(t *testing.T) {
	t.Run("memzk", func(t *testing.T) {
		z := newMemZK()
		testStoreContract(t, contractEnv{
			session: func(*testing.T, int32) Store { return z.newSession() },
			register: func(t *testing.T, s Store, id int32) {
				if err := s.(*memSession).registerBroker(zkstore.Broker{ID: id}); err != nil {
					t.Fatal(err)
				}
			},
			topic: func(_ *testing.T, _ Store, name string, replicas [][]int32) { z.createTopic(name, replicas) },
			updateISR: func(_ *testing.T, _ Store, topic string, p int32, st zkstore.PartitionState) error {
				err := z.updateISR(topic, p, st)
				if errors.Is(err, zk.ErrBadVersion) {
					return zkstore.ErrBadVersion
				}
				return err
			},
		})
	})
	t.Run("zookeeper", func(t *testing.T) {
		srv := testcluster.StartZooKeeper(t)
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		testStoreContract(t, contractEnv{
			session: func(t *testing.T, broker int32) Store {
				s, err := zkstore.Open(zkstore.Options{Connect: srv.Addr + "/contract", SessionTimeout: 6 * time.Second,
					BrokerID: broker, Logger: quiet, ClusterID: "contract"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			},
			register: func(t *testing.T, s Store, id int32) {
				if _, err := s.(*zkstore.Store).RegisterBroker(zkstore.Broker{ID: id,
					Endpoints: []zkstore.Endpoint{{Name: "PLAINTEXT", Host: "127.0.0.1", Port: 9092}}}); err != nil {
					t.Fatal(err)
				}
			},
			topic: func(t *testing.T, s Store, name string, replicas [][]int32) {
				if err := s.(*zkstore.Store).CreateTopic(metastore.Topic{Name: name, ID: metastore.NewTopicID(),
					Partitions: int32(len(replicas)), ReplicationFactor: int16(len(replicas[0])), Assignment: replicas}); err != nil {
					t.Fatal(err)
				}
			},
			updateISR: func(_ *testing.T, s Store, topic string, p int32, st zkstore.PartitionState) error {
				_, err := s.(*zkstore.Store).UpdateISR(topic, p, st)
				return err
			},
		})
	})
}

// fired reports whether watch ch fired (waiting up to a bound for
// ZooKeeper's notification).
func fired(ch <-chan zk.Event) bool {
	select {
	case <-ch:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

func testStoreContract(t *testing.T, env contractEnv) {
	a, b := env.session(t, 1), env.session(t, 2)

	// Election: one controller at a time, each term with a larger epoch.
	id, cw, err := b.ControllerID()
	if err != nil || id != -1 {
		t.Fatalf("controller before any election: %d, %v", id, err)
	}
	fa, err := a.Elect(1)
	if err != nil {
		t.Fatal(err)
	}
	if !fired(cw) {
		t.Fatal("the /controller watch did not fire on the election")
	}
	if _, err := b.Elect(2); !errors.Is(err, zkstore.ErrNotElected) {
		t.Fatalf("second election: %v", err)
	}
	if id, _, _ := b.ControllerID(); id != 1 {
		t.Fatalf("controller %d", id)
	}

	// Brokers and their watch.
	env.register(t, a, 1)
	bs, bw, err := a.Brokers()
	if err != nil || len(bs) != 1 || bs[0].ID != 1 {
		t.Fatalf("brokers %+v, %v", bs, err)
	}
	env.register(t, b, 2)
	if !fired(bw) {
		t.Fatal("the brokers watch did not fire on a registration")
	}
	bs, _, _ = a.Brokers()
	if len(bs) != 2 || bs[1].ID != 2 || bs[1].Epoch <= bs[0].Epoch {
		t.Fatalf("brokers %+v: want 1 and 2, 2 registered later", bs)
	}
	if ep, exists, own, err := a.BrokerRegistration(2); err != nil || !exists || own || ep != bs[1].Epoch {
		t.Fatalf("registration of 2 seen by 1: %d %v %v %v", ep, exists, own, err)
	}

	// Topics, assignments and their watches.
	names, tw, err := a.TopicNames()
	if err != nil || len(names) != 0 {
		t.Fatalf("topics %v, %v", names, err)
	}
	env.topic(t, b, "t", [][]int32{{1, 2}})
	if !fired(tw) {
		t.Fatal("the topics watch did not fire on a creation")
	}
	asg, _, err := a.AssignmentW("t")
	if err != nil || !slices.Equal(asg.Replicas[0], []int32{1, 2}) {
		t.Fatalf("assignment %+v, %v", asg, err)
	}
	if _, _, err := a.AssignmentW("nope"); err == nil {
		t.Fatal("assignment of an unknown topic: no error")
	}

	// Partition states: created at version 0, conditional sets, in
	// batches (a batch of many: several multis on ZooKeeper).
	if _, ok, err := readState(a, "t", 0); ok || err != nil {
		t.Fatalf("state before creation: %v %v", ok, err)
	}
	st := zkstore.PartitionState{Leader: 1, ISR: []int32{1, 2}, ControllerEpoch: fa.Epoch}
	if _, err := writeState(a, fa, "t", 0, st, true); err != nil {
		t.Fatal(err)
	}
	if _, err := writeState(a, fa, "t", 0, st, true); !errors.Is(err, zk.ErrNodeExists) {
		t.Fatalf("second creation: %v", err)
	}
	got, ok, err := readState(a, "t", 0)
	if err != nil || !ok || got.ZkVersion != 0 || got.Leader != 1 || !slices.Equal(got.ISR, []int32{1, 2}) {
		t.Fatalf("state %+v %v %v", got, ok, err)
	}
	got.LeaderEpoch = 1
	if v, err := writeState(a, fa, "t", 0, got, false); err != nil || v != 1 {
		t.Fatalf("set: %d %v", v, err)
	}
	if _, err := writeState(a, fa, "t", 0, got, false); !errors.Is(err, zkstore.ErrBadVersion) {
		t.Fatalf("set on a stale version: %v", err)
	}
	var many [][]int32
	for range 600 {
		many = append(many, []int32{1, 2})
	}
	env.topic(t, b, "many", many)
	var ws []zkstore.StateWrite
	var tps []zkstore.TopicPartition
	for p := range int32(600) {
		tp := zkstore.TopicPartition{Topic: "many", Partition: p}
		tps = append(tps, tp)
		ws = append(ws, zkstore.StateWrite{TP: tp, State: zkstore.PartitionState{Leader: 1 + p%2, ISR: []int32{1, 2}, ControllerEpoch: fa.Epoch}, Create: true})
	}
	if _, errs, err := a.WritePartitionStates(fa, ws); err != nil || slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
		t.Fatalf("creating 600 states: %v %v", err, errs)
	}
	sts, oks, err := a.PartitionStates(tps)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tps {
		if !oks[i] || sts[i].Leader != ws[i].State.Leader || sts[i].ZkVersion != 0 {
			t.Fatalf("state %d after the batch: %+v %v", i, sts[i], oks[i])
		}
	}
	// One stale version among many: only that write fails.
	for i := range ws {
		ws[i].Create = false
		ws[i].State.LeaderEpoch = 1
	}
	ws[450].State.ZkVersion = 7
	versions, errs, err := a.WritePartitionStates(fa, ws)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ws {
		switch {
		case i == 450 && !errors.Is(errs[i], zkstore.ErrBadVersion):
			t.Fatalf("stale write in a batch: %v", errs[i])
		case i != 450 && (errs[i] != nil || versions[i] != 1):
			t.Fatalf("write %d in a batch with a stale one: %d %v", i, versions[i], errs[i])
		}
	}

	// A leader's ISR change and its notification.
	isrNames, iw, err := a.ISRChangesW()
	if err != nil || len(isrNames) != 0 {
		t.Fatalf("ISR changes %v, %v", isrNames, err)
	}
	got, _, _ = readState(b, "t", 0)
	got.ISR = []int32{1}
	if err := env.updateISR(t, b, "t", 0, got); err != nil {
		t.Fatal(err)
	}
	if err := env.updateISR(t, b, "t", 0, got); !errors.Is(err, zkstore.ErrBadVersion) {
		t.Fatalf("ISR change on a stale version: %v", err)
	}
	if !fired(iw) {
		t.Fatal("the ISR changes watch did not fire")
	}
	isrNames, _, _ = a.ISRChangesW()
	if len(isrNames) != 1 {
		t.Fatalf("ISR changes %v", isrNames)
	}
	tps, err = a.TakeISRChange(isrNames[0])
	if err != nil || len(tps) != 1 || tps[0] != (zkstore.TopicPartition{Topic: "t", Partition: 0}) {
		t.Fatalf("ISR change %v, %v", tps, err)
	}
	if isrNames, _, _ = a.ISRChangesW(); len(isrNames) != 0 {
		t.Fatalf("ISR changes after taking: %v", isrNames)
	}

	// Fencing: once another controller is elected, the old term's writes
	// fail with ErrFenced whatever their version.
	if err := a.Resign(); err != nil {
		t.Fatal(err)
	}
	fb, err := b.Elect(2)
	if err != nil || fb.Epoch != fa.Epoch+1 {
		t.Fatalf("re-election: %+v, %v", fb, err)
	}
	got, _, _ = readState(a, "t", 0)
	if _, err := writeState(a, fa, "t", 0, got, false); !errors.Is(err, zkstore.ErrFenced) {
		t.Fatalf("write of the deposed controller: %v", err)
	}
	got.ZkVersion = 99
	if _, err := writeState(a, fa, "t", 0, got, false); !errors.Is(err, zkstore.ErrFenced) {
		t.Fatalf("write of the deposed controller on a stale version: %v", err)
	}
	if _, err := writeState(a, fa, "t", 1, got, true); !errors.Is(err, zkstore.ErrFenced) {
		t.Fatalf("creation by the deposed controller: %v", err)
	}
	if _, _, err := a.WritePartitionStates(fa, ws); !errors.Is(err, zkstore.ErrFenced) {
		t.Fatalf("batch of the deposed controller: %v", err)
	}
	if err := a.Resign(); err != nil { // not its /controller: nothing
		t.Fatal(err)
	}
	if id, _, _ := a.ControllerID(); id != 2 {
		t.Fatalf("controller after the old one resigned again: %d", id)
	}

	// Deletion marks.
	dels, dw, err := b.PendingDeletionsW()
	if err != nil || len(dels) != 0 {
		t.Fatalf("deletions %v, %v", dels, err)
	}
	if zs, ok := a.(*zkstore.Store); ok {
		if err := zs.DeleteTopic("t"); err != nil {
			t.Fatal(err)
		}
	} else {
		a.(*memSession).zk.markDeletion("t")
	}
	if !fired(dw) {
		t.Fatal("the deletions watch did not fire")
	}
	if err := b.DeletionDone("t"); err != nil {
		t.Fatal(err)
	}
	if names, _, _ := b.TopicNames(); !slices.Equal(names, []string{"many"}) {
		t.Fatalf("topics after deletion: %v", names)
	}
	if dels, _, _ := b.PendingDeletionsW(); len(dels) != 0 {
		t.Fatalf("deletions after deletion: %v", dels)
	}
	if _, ok, _ := readState(b, "t", 0); ok {
		t.Fatal("state after deletion")
	}
}

// readState reads one partition state through the batch API.
func readState(s Store, topic string, p int32) (zkstore.PartitionState, bool, error) {
	sts, oks, err := s.PartitionStates([]zkstore.TopicPartition{{Topic: topic, Partition: p}})
	if err != nil {
		return zkstore.PartitionState{}, false, err
	}
	return sts[0], oks[0], nil
}

// writeState writes one partition state through the batch API.
func writeState(s Store, f zkstore.Fence, topic string, p int32, st zkstore.PartitionState, create bool) (int32, error) {
	versions, errs, err := s.WritePartitionStates(f, []zkstore.StateWrite{{TP: zkstore.TopicPartition{Topic: topic, Partition: p}, State: st, Create: create}})
	if err != nil {
		return 0, err
	}
	return versions[0], errs[0]
}
