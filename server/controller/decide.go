package controller

import (
	"slices"

	"github.com/kvlog/kvlog/server/zkstore"
)

// The controller's decisions as pure functions of the partition state and
// the set of live brokers (Kafka's PartitionLeaderElectionAlgorithms and
// replica state machine rules, ZooKeeper era). Every change bumps the
// leader epoch.

// NoLeader is a partition without a leader (Kafka's LeaderAndIsr.NoLeader).
const NoLeader int32 = -1

// electOffline picks the first replica in assignment order that is live and
// in the ISR; with unclean, failing that, the first live replica. ok is
// false when there is none.
func electOffline(replicas, isr []int32, live func(int32) bool, unclean bool) (leader int32, uncleanUsed, ok bool) {
	for _, r := range replicas {
		if live(r) && slices.Contains(isr, r) {
			return r, false, true
		}
	}
	if unclean {
		for _, r := range replicas {
			if live(r) {
				return r, true, true
			}
		}
	}
	return NoLeader, false, false
}

// InitialState is a new partition's first state: the first live replica
// leads, the live replicas are the ISR. ok is false when no replica is live.
func InitialState(replicas []int32, live func(int32) bool, controllerEpoch int32) (zkstore.PartitionState, bool) {
	var isr []int32
	for _, r := range replicas {
		if live(r) {
			isr = append(isr, r)
		}
	}
	if len(isr) == 0 {
		return zkstore.PartitionState{}, false
	}
	return zkstore.PartitionState{Leader: isr[0], LeaderEpoch: 0, ISR: isr, ControllerEpoch: controllerEpoch}, true
}

// AfterBrokerLoss is the state after the brokers for which dead is true
// went away: dead followers leave the ISR (unless that would empty it: the
// last member stays, so it can be elected when it returns); a dead leader
// is replaced from the live ISR, or by NoLeader. changed is false when none
// of the dead brokers mattered.
func AfterBrokerLoss(st zkstore.PartitionState, replicas []int32, dead, live func(int32) bool, unclean bool, controllerEpoch int32) (zkstore.PartitionState, bool) {
	leaderDead := st.Leader == NoLeader || dead(st.Leader)
	isrTouched := false
	var isr []int32
	for _, r := range st.ISR {
		if dead(r) {
			isrTouched = true
			continue
		}
		isr = append(isr, r)
	}
	if !leaderDead && !isrTouched {
		return st, false
	}
	next := st
	next.ControllerEpoch = controllerEpoch
	next.LeaderEpoch = st.LeaderEpoch + 1
	if leaderDead {
		leader, uncleanUsed, ok := electOffline(replicas, isr, live, unclean)
		switch {
		case ok && uncleanUsed:
			next.Leader, next.ISR = leader, []int32{leader}
		case ok:
			next.Leader, next.ISR = leader, isr
		default:
			if st.Leader == NoLeader && !isrTouched {
				return st, false // still offline, nothing new
			}
			next.Leader = NoLeader
			if len(isr) == 0 {
				// Keep the last ISR: they hold the committed data, and the
				// first of them to return is elected.
				isr = slices.Clone(st.ISR)
			}
			next.ISR = isr
		}
		return next, true
	}
	if len(isr) == 0 {
		return st, false
	}
	next.ISR = isr
	return next, true
}

// ElectOnline elects a leader for an offline partition (NoLeader) now that
// more brokers are live. ok is false when still no candidate.
func ElectOnline(st zkstore.PartitionState, replicas []int32, live func(int32) bool, unclean bool, controllerEpoch int32) (zkstore.PartitionState, bool) {
	if st.Leader != NoLeader {
		return st, false
	}
	leader, uncleanUsed, ok := electOffline(replicas, st.ISR, live, unclean)
	if !ok {
		return st, false
	}
	next := st
	next.Leader = leader
	next.LeaderEpoch++
	next.ControllerEpoch = controllerEpoch
	if uncleanUsed {
		next.ISR = []int32{leader}
	}
	return next, true
}

// MoveLeaderFrom is controlled shutdown of broker id: a partition it leads
// gets the first other replica that is live, in the ISR and not shutting
// down; a partition it follows drops it from the ISR (if others remain).
// moved is false when the partition must stay (id is the only ISR member).
func MoveLeaderFrom(st zkstore.PartitionState, replicas []int32, id int32, eligible func(int32) bool, controllerEpoch int32) (next zkstore.PartitionState, changed, stuck bool) {
	var isr []int32
	for _, r := range st.ISR {
		if r != id {
			isr = append(isr, r)
		}
	}
	if st.Leader == id {
		for _, r := range replicas {
			if r != id && eligible(r) && slices.Contains(isr, r) {
				next = st
				next.Leader, next.ISR = r, isr
				next.LeaderEpoch++
				next.ControllerEpoch = controllerEpoch
				return next, true, false
			}
		}
		return st, false, true
	}
	if len(isr) == len(st.ISR) || len(isr) == 0 {
		return st, false, false
	}
	next = st
	next.ISR = isr
	next.LeaderEpoch++
	next.ControllerEpoch = controllerEpoch
	return next, true, false
}

// PreferredLeader moves leadership to the preferred replica (the first in
// the assignment) when it is live, in the ISR and not the leader.
func PreferredLeader(st zkstore.PartitionState, replicas []int32, eligible func(int32) bool, controllerEpoch int32) (zkstore.PartitionState, bool) {
	if len(replicas) == 0 {
		return st, false
	}
	pref := replicas[0]
	if st.Leader == pref || !eligible(pref) || !slices.Contains(st.ISR, pref) {
		return st, false
	}
	next := st
	next.Leader = pref
	next.LeaderEpoch++
	next.ControllerEpoch = controllerEpoch
	return next, true
}
