package zkstore

import (
	"errors"
	"fmt"
	"sync"

	"github.com/go-zookeeper/zk"
)

// Batched partition-state reads and writes for the controller. ZooKeeper
// answers the requests of one session in order and go-zookeeper pipelines
// the requests of concurrent callers on its one connection, so many reads
// in flight cost about one round trip per window rather than one each; and
// a multi of many writes is one transaction (one log append and fsync on
// the ZooKeeper side) instead of one per partition. Kafka's controller made
// the same step (asynchronous, pipelined ZooKeeper requests).

const (
	// batchInFlight bounds the requests of one batch in flight at once.
	batchInFlight = 32
	// writesPerMulti bounds the partition writes of one multi (each a
	// few hundred bytes: far under ZooKeeper's 1 MB request bound).
	writesPerMulti = 250
)

// StateWrite is one fenced write of a partition state: the first state of
// a partition (Create) or a replacement conditional on State.ZkVersion.
type StateWrite struct {
	TP     TopicPartition
	State  PartitionState
	Create bool
}

// parallel runs fn(i) for i in [0, n) with at most batchInFlight at once.
func parallel(n int, fn func(i int)) {
	if n == 0 {
		return
	}
	workers := min(n, batchInFlight)
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// PartitionStates reads the states of tps: states[i] and ok[i] (false when
// it has none yet) are tps[i]'s. The reads are pipelined.
func (s *Store) PartitionStates(tps []TopicPartition) (states []PartitionState, ok []bool, err error) {
	states = make([]PartitionState, len(tps))
	ok = make([]bool, len(tps))
	errs := make([]error, len(tps))
	parallel(len(tps), func(i int) {
		states[i], ok[i], errs[i] = s.PartitionState(tps[i].Topic, tps[i].Partition)
	})
	for i, e := range errs {
		if e != nil {
			return nil, nil, fmt.Errorf("zkstore: read state of %s-%d: %w", tps[i].Topic, tps[i].Partition, e)
		}
	}
	return states, ok, nil
}

// WritePartitionStates applies many controller writes, fenced by f: each
// multi checks /controller_epoch and writes up to writesPerMulti states,
// several multis in flight. A multi that fails for a reason other than the
// fence is retried write by write, so that each write gets its own answer.
// versions[i] and errs[i] are ws[i]'s: the new znode version, or
// ErrBadVersion (a set whose version moved), an error wrapping
// zk.ErrNodeExists (a create whose state exists) or another error. err is
// ErrFenced when another controller was elected (nothing more is written).
func (s *Store) WritePartitionStates(f Fence, ws []StateWrite) (versions []int32, errs []error, err error) {
	versions = make([]int32, len(ws))
	errs = make([]error, len(ws))
	// A created state's parent: /brokers/topics/<t>/partitions (once per
	// topic) here, /brokers/topics/<t>/partitions/<p> in the multi.
	dirs := map[string]bool{}
	for _, w := range ws {
		if w.Create {
			dirs[w.TP.Topic] = true
		}
	}
	for t := range dirs {
		if err := s.createPersistent(s.p(partitionsPath(t)), nil, openACL); err != nil {
			return nil, nil, fmt.Errorf("zkstore: create %s: %w", partitionsPath(t), err)
		}
	}
	nChunks := (len(ws) + writesPerMulti - 1) / writesPerMulti
	var mu sync.Mutex
	fenced := false
	parallel(nChunks, func(c int) {
		lo, hi := c*writesPerMulti, min((c+1)*writesPerMulti, len(ws))
		chunk := ws[lo:hi]
		ops := make([]any, 0, 2*len(chunk))
		idx := make([]int, 0, len(chunk)) // the op of each write's state
		for _, w := range chunk {
			data, err := encodeState(w.State)
			if err != nil {
				for i := lo; i < hi; i++ {
					errs[i] = err
				}
				return
			}
			if w.Create {
				ops = append(ops, &zk.CreateRequest{Path: s.p(partitionPath(w.TP.Topic, w.TP.Partition)), Acl: openACL})
				idx = append(idx, len(ops))
				ops = append(ops, &zk.CreateRequest{Path: s.p(statePath(w.TP.Topic, w.TP.Partition)), Data: data, Acl: openACL})
			} else {
				idx = append(idx, len(ops))
				ops = append(ops, &zk.SetDataRequest{Path: s.p(statePath(w.TP.Topic, w.TP.Partition)), Data: data, Version: w.State.ZkVersion})
			}
		}
		res, err := s.fenced(f, ops...)
		if err == nil {
			for j := range chunk {
				if chunk[j].Create {
					versions[lo+j] = 0
				} else {
					versions[lo+j] = res[idx[j]].Stat.Version
				}
			}
			return
		}
		if errors.Is(err, ErrFenced) {
			mu.Lock()
			fenced = true
			mu.Unlock()
			return
		}
		// One write failed (a version moved, a leftover directory): each
		// alone.
		for j, w := range chunk {
			if w.Create {
				versions[lo+j], errs[lo+j] = s.CreatePartitionState(f, w.TP.Topic, w.TP.Partition, w.State)
			} else {
				versions[lo+j], errs[lo+j] = s.SetPartitionState(f, w.TP.Topic, w.TP.Partition, w.State)
			}
			if errors.Is(errs[lo+j], ErrFenced) {
				mu.Lock()
				fenced = true
				mu.Unlock()
				return
			}
		}
	})
	if fenced {
		return nil, nil, ErrFenced
	}
	return versions, errs, nil
}
