package controller

import (
	"slices"
	"testing"

	"github.com/kvlog/kvlog/server/zkstore"
)

func set(ids ...int32) func(int32) bool {
	return func(id int32) bool { return slices.Contains(ids, id) }
}

func TestAfterBrokerLoss(t *testing.T) {
	replicas := []int32{1, 2, 3}
	for _, c := range []struct {
		name       string
		st         zkstore.PartitionState
		dead, live []int32
		unclean    bool
		want       zkstore.PartitionState
		changed    bool
	}{
		{"follower dies", zkstore.PartitionState{Leader: 1, LeaderEpoch: 4, ISR: []int32{1, 2, 3}}, []int32{3}, []int32{1, 2}, false,
			zkstore.PartitionState{Leader: 1, LeaderEpoch: 5, ISR: []int32{1, 2}, ControllerEpoch: 9}, true},
		{"leader dies: next in assignment order from ISR", zkstore.PartitionState{Leader: 1, LeaderEpoch: 4, ISR: []int32{1, 3, 2}}, []int32{1}, []int32{2, 3}, false,
			zkstore.PartitionState{Leader: 2, LeaderEpoch: 5, ISR: []int32{3, 2}, ControllerEpoch: 9}, true},
		{"leader dies, survivor out of ISR: offline, ISR kept", zkstore.PartitionState{Leader: 1, LeaderEpoch: 4, ISR: []int32{1}}, []int32{1}, []int32{2, 3}, false,
			zkstore.PartitionState{Leader: NoLeader, LeaderEpoch: 5, ISR: []int32{1}, ControllerEpoch: 9}, true},
		{"unclean election", zkstore.PartitionState{Leader: 1, LeaderEpoch: 4, ISR: []int32{1}}, []int32{1}, []int32{2, 3}, true,
			zkstore.PartitionState{Leader: 2, LeaderEpoch: 5, ISR: []int32{2}, ControllerEpoch: 9}, true},
		{"unrelated broker", zkstore.PartitionState{Leader: 1, LeaderEpoch: 4, ISR: []int32{1, 2}}, []int32{3}, []int32{1, 2}, false,
			zkstore.PartitionState{Leader: 1, LeaderEpoch: 4, ISR: []int32{1, 2}}, false},
	} {
		got, changed := AfterBrokerLoss(c.st, replicas, set(c.dead...), set(c.live...), c.unclean, 9)
		if changed != c.changed || got.Leader != c.want.Leader || got.LeaderEpoch != c.want.LeaderEpoch || !slices.Equal(got.ISR, c.want.ISR) {
			t.Errorf("%s: got %+v changed %v, want %+v %v", c.name, got, changed, c.want, c.changed)
		}
	}
}

func TestElectOnlineAndShutdown(t *testing.T) {
	replicas := []int32{1, 2, 3}
	off := zkstore.PartitionState{Leader: NoLeader, LeaderEpoch: 5, ISR: []int32{1}}
	if _, ok := ElectOnline(off, replicas, set(2, 3), false, 9); ok {
		t.Fatal("elected a replica outside the ISR without unclean election")
	}
	st, ok := ElectOnline(off, replicas, set(1, 2), false, 9)
	if !ok || st.Leader != 1 || st.LeaderEpoch != 6 {
		t.Fatalf("returning ISR member: %+v %v", st, ok)
	}
	// Controlled shutdown of the leader.
	st = zkstore.PartitionState{Leader: 1, LeaderEpoch: 2, ISR: []int32{1, 2, 3}}
	next, changed, stuck := MoveLeaderFrom(st, replicas, 1, set(2, 3), 9)
	if !changed || stuck || next.Leader != 2 || !slices.Equal(next.ISR, []int32{2, 3}) || next.LeaderEpoch != 3 {
		t.Fatalf("move leader: %+v %v %v", next, changed, stuck)
	}
	// Sole ISR member cannot move.
	st = zkstore.PartitionState{Leader: 1, LeaderEpoch: 2, ISR: []int32{1}}
	if _, changed, stuck := MoveLeaderFrom(st, replicas, 1, set(2, 3), 9); changed || !stuck {
		t.Fatalf("sole ISR member moved: %v %v", changed, stuck)
	}
	// Follower leaves the ISR.
	st = zkstore.PartitionState{Leader: 2, LeaderEpoch: 2, ISR: []int32{2, 1}}
	if next, changed, _ := MoveLeaderFrom(st, replicas, 1, set(2, 3), 9); !changed || !slices.Equal(next.ISR, []int32{2}) {
		t.Fatalf("follower shutdown: %+v", next)
	}
	// Preferred leader.
	st = zkstore.PartitionState{Leader: 2, LeaderEpoch: 2, ISR: []int32{2, 1}}
	if next, ok := PreferredLeader(st, replicas, set(1, 2), 9); !ok || next.Leader != 1 {
		t.Fatalf("preferred: %+v", next)
	}
	if st, ok := InitialState(replicas, set(2, 3), 1); !ok || st.Leader != 2 || !slices.Equal(st.ISR, []int32{2, 3}) {
		t.Fatalf("initial: %+v", st)
	}
}
