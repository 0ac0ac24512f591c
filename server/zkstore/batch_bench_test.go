package zkstore

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/testcluster"
	"github.com/kvlog/kvlog/server/metastore"
)

// BenchmarkPartitionStates: the controller's batched reads and writes of
// partition states against a real ZooKeeper (KVLOG_BENCH_STATES states,
// default 30,000, in topics of 3,000): the fail-over's read of every state,
// a write of every state, and a write of a third of them (the partitions a
// dead broker of three led).
func BenchmarkPartitionStates(b *testing.B) {
	n := 30000
	if v, err := strconv.Atoi(os.Getenv("KVLOG_BENCH_STATES")); err == nil && v > 0 {
		n = v
	}
	srv := testcluster.StartZooKeeper(b)
	s, err := Open(Options{Connect: srv.Addr + "/bench", SessionTimeout: 10 * time.Second, BrokerID: 1, Logger: quiet, ClusterID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f, err := s.Elect(1)
	if err != nil {
		b.Fatal(err)
	}
	var tps []TopicPartition
	var ws []StateWrite
	for t := 0; len(tps) < n; t++ {
		name := fmt.Sprintf("t%d", t)
		parts := min(3000, n-len(tps))
		asg := make([][]int32, parts)
		for p := range asg {
			asg[p] = []int32{1, 2, 3}
		}
		if err := s.CreateTopic(metastore.Topic{Name: name, Partitions: int32(parts), ReplicationFactor: 3, Assignment: asg}); err != nil {
			b.Fatal(err)
		}
		for p := range parts {
			tp := TopicPartition{Topic: name, Partition: int32(p)}
			tps = append(tps, tp)
			ws = append(ws, StateWrite{TP: tp, State: PartitionState{Leader: 1, ISR: []int32{1, 2, 3}, ControllerEpoch: f.Epoch}, Create: true})
		}
	}
	start := time.Now()
	if _, errs, err := s.WritePartitionStates(f, ws); err != nil {
		b.Fatal(err)
	} else {
		for _, e := range errs {
			if e != nil {
				b.Fatal(e)
			}
		}
	}
	b.Logf("created %d states in %v", n, time.Since(start).Round(time.Millisecond))
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		sts, _, err := s.PartitionStates(tps)
		if err != nil {
			b.Fatal(err)
		}
		read := time.Since(start)
		start = time.Now()
		var third []StateWrite
		for i, tp := range tps {
			if i%3 == 0 {
				st := sts[i]
				st.LeaderEpoch++
				st.Leader = 2
				third = append(third, StateWrite{TP: tp, State: st})
			}
		}
		if _, _, err := s.WritePartitionStates(f, third); err != nil {
			b.Fatal(err)
		}
		wrote := time.Since(start)
		b.Logf("%d states: read all %v, wrote a third %v", n, read.Round(time.Millisecond), wrote.Round(time.Millisecond))
		b.ReportMetric(read.Seconds(), "read-s")
		b.ReportMetric(wrote.Seconds(), "write-third-s")
	}
}
