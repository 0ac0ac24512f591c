package replica

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestIdleSessionFetchReusesTheSession: a follower's incremental fetch
// whose partitions are all where they were last sent names no partition,
// forgets none and keeps the session's map as it is (an idle follower of
// thousands of partitions built a new map of all of them per fetch); a
// moved partition is named alone, a dropped one forgotten.
func TestIdleSessionFetchReusesTheSession(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	var fs []pendingReq
	for i := range int32(3) {
		tp := engine.TopicPartition{Topic: "t", Partition: i}
		l, err := engine.OpenLog(filepath.Join(t.TempDir(), engine.PartitionDirName(tp)), tp, engine.DefaultConfig(),
			engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		fs = append(fs, pendingReq{p: New(l, Options{ID: 2}), req: FollowerRequest{FetchOffset: Offset(10 * i), CurrentLeaderEpoch: 4}})
	}
	var s fetchSession
	first := kmsg.NewPtrFetchRequest()
	s.answered(&kmsg.FetchResponse{SessionID: 7}, s.build(first, fs, 1<<20, false))
	if len(first.Topics) != 1 || len(first.Topics[0].Partitions) != 3 {
		t.Fatalf("full fetch: %+v", first.Topics)
	}
	idle := kmsg.NewPtrFetchRequest()
	next := s.build(idle, fs, 1<<20, false)
	if idle.SessionID != 7 || idle.SessionEpoch != 1 || len(idle.Topics) != 0 || len(idle.ForgottenTopics) != 0 {
		t.Fatalf("idle fetch: session %d epoch %d, %d topics, %d forgotten", idle.SessionID, idle.SessionEpoch, len(idle.Topics), len(idle.ForgottenTopics))
	}
	if reflect.ValueOf(next).Pointer() != reflect.ValueOf(s.sent).Pointer() {
		t.Fatal("an idle fetch built a new session map")
	}
	s.answered(&kmsg.FetchResponse{SessionID: 7}, next)

	fs[1].req.FetchOffset = 11
	moved := kmsg.NewPtrFetchRequest()
	s.answered(&kmsg.FetchResponse{SessionID: 7}, s.build(moved, fs[:2], 1<<20, false))
	if len(moved.Topics) != 1 || len(moved.Topics[0].Partitions) != 1 || moved.Topics[0].Partitions[0].Partition != 1 ||
		len(moved.ForgottenTopics) != 1 || !reflect.DeepEqual(moved.ForgottenTopics[0].Partitions, []int32{2}) {
		t.Fatalf("fetch after a move and a drop: topics %+v forgotten %+v", moved.Topics, moved.ForgottenTopics)
	}
}
