package coordlog

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/replica"
)

// TestLogAppendSyncReplay: a coordinator's writes go through the
// partition manager as acks=all leader appends, Sync returns once the
// high watermark passed them (here: fsynced, the partition leading
// alone), Replay and ReplayTxn read them back with their transaction
// fields, and a transactional producer's batches follow each other's
// sequence. A partition beyond the topic's count or not hosted here is
// refused with its Kafka error; a topic that does not exist syncs and
// replays nothing.
func TestLogAppendSyncReplay(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tp := engine.TopicPartition{Topic: "__consumer_offsets", Partition: 0}
	l, err := engine.OpenLog(filepath.Join(t.TempDir(), engine.PartitionDirName(tp)), tp, engine.DefaultConfig(),
		engine.LogOptions{Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	m := replica.NewManager(replica.ManagerConfig{ID: 1, SyncAlone: true, Logger: quiet})
	defer func() { m.Close(); l.Close() }()
	rep, err := m.LeadAlone(l, 0)
	if err != nil {
		t.Fatal(err)
	}
	exists, hosted := false, true
	cl := New(Config{
		Topic:      tp.Topic,
		Partitions: 2,
		Lookup: func(p int32, create bool) (Part, error) {
			if !exists && !create {
				return Part{}, nil
			}
			exists = true
			pt := Part{Exists: true, Partitions: 1, MinInsync: 1}
			if hosted {
				pt.Rep = rep
			}
			return pt, nil
		},
		Replicas:   m,
		TimeoutKey: "offsets.commit.timeout.ms",
		Timeout:    func() time.Duration { return time.Minute },
		NotHosted:  kerr.NotCoordinator,
		Clock:      clock.Real,
		Logger:     quiet,
	})

	if err := cl.Sync(0); err != nil {
		t.Fatalf("sync before the topic exists: %v", err)
	}
	if err := cl.Replay(0, func(k, v []byte) { t.Errorf("replayed %q before the topic exists", k) }); err != nil {
		t.Fatal(err)
	}
	if err := cl.Append(0, []KV{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := cl.AppendAs(0, 7, 0, []KV{{Key: []byte("t"), Value: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Sync(0); err != nil {
		t.Fatal(err)
	}
	if hw, leo := l.HighWatermark(), l.LogEndOffset(); hw != leo || leo != 4 {
		t.Fatalf("after Sync: high watermark %d, log end %d, want both 4", hw, leo)
	}
	var keys []string
	if err := cl.Replay(0, func(k, v []byte) { keys = append(keys, string(k)+"="+string(v)) }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a=1", "b=", "t=x", "t=x"}; !slices.Equal(keys, want) {
		t.Fatalf("replayed %q, want %q", keys, want)
	}
	var txnRecs int
	if err := cl.ReplayTxn(0, func(r Record) {
		if r.Transactional {
			txnRecs++
			if r.PID != 7 {
				t.Errorf("transactional record of producer %d, want 7", r.PID)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if txnRecs != 2 {
		t.Fatalf("%d transactional records replayed, want 2", txnRecs)
	}

	var ke *kerr.Error
	if err := cl.Append(1, nil); !errors.As(err, &ke) || ke != kerr.UnknownTopicOrPartition {
		t.Fatalf("a partition beyond the topic's count: %v", err)
	}
	hosted = false
	if err := cl.Append(0, []KV{{Key: []byte("c")}}); !errors.As(err, &ke) || ke != kerr.NotCoordinator {
		t.Fatalf("a partition not hosted here: %v", err)
	}
}
