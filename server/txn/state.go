package txn

import "fmt"

// State is a transactional id's state, Kafka's TransactionState; the
// numbers are the TransactionStatus values of __transaction_state.
//
//	Empty/CompleteCommit/CompleteAbort ──AddPartitions/AddOffsets──▶ Ongoing ──AddPartitions──▶ Ongoing
//	Ongoing ──EndTxn(commit)──▶ PrepareCommit ──markers written──▶ CompleteCommit
//	Ongoing ──EndTxn(abort), timeout, InitProducerId──▶ PrepareAbort ──markers written──▶ CompleteAbort
//	Empty/CompleteCommit/CompleteAbort ──InitProducerId──▶ Empty (epoch bumped)
//	Empty/CompleteCommit/CompleteAbort ──transactional.id.expiration.ms──▶ Dead (a tombstone)
//
// PrepareEpochFence is only ever a pending state: fencing a producer in
// Ongoing (its timeout, or a new instance's InitProducerId) bumps the
// epoch and writes PrepareAbort.
type State int8

const (
	Empty             State = 0
	Ongoing           State = 1
	PrepareCommit     State = 2
	PrepareAbort      State = 3
	CompleteCommit    State = 4
	CompleteAbort     State = 5
	Dead              State = 6
	PrepareEpochFence State = 7
)

var stateNames = [...]string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

// String is Kafka's name of the state, as DescribeTransactions and
// ListTransactions report it.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int8(s))
}

// StateFromName parses a name String returns.
func StateFromName(name string) (State, bool) {
	for i, n := range stateNames {
		if n == name {
			return State(i), true
		}
	}
	return 0, false
}

func (s State) valid() bool { return s >= Empty && s <= PrepareEpochFence }

// validPrevious lists, for each state, the states it may be entered from.
var validPrevious = [...][]State{
	Empty:             {Empty, CompleteCommit, CompleteAbort},
	Ongoing:           {Ongoing, Empty, CompleteCommit, CompleteAbort},
	PrepareCommit:     {Ongoing},
	PrepareAbort:      {Ongoing, PrepareEpochFence},
	CompleteCommit:    {PrepareCommit},
	CompleteAbort:     {PrepareAbort},
	Dead:              {Empty, CompleteAbort, CompleteCommit},
	PrepareEpochFence: {Ongoing},
}

func canTransition(from, to State) bool {
	for _, s := range validPrevious[to] {
		if s == from {
			return true
		}
	}
	return false
}

// idle reports whether no transaction is in progress (the id may then
// start one, be re-initialized or expire).
func (s State) idle() bool { return s == Empty || s == CompleteCommit || s == CompleteAbort }
