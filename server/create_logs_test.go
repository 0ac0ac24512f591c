package server

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/engine/vfs"
)

// logDirSyncFS counts the directory fsyncs of one directory.
type logDirSyncFS struct {
	vfs.FS
	dir   string
	syncs atomic.Int64
}

func (f *logDirSyncFS) SyncDir(name string) error {
	if filepath.Clean(name) == f.dir {
		f.syncs.Add(1)
	}
	return f.FS.SyncDir(name)
}

// TestCreateTopicLogsInOneBatch: a single node creates the partition logs
// of a new topic, and of partitions added to it, in one batch: the log dir
// is fsynced a few times per request (the new partition directories once,
// the metadata store's own writes), not once per partition as when each
// log was created on its own; and every partition accepts a produce.
func TestCreateTopicLogsInOneBatch(t *testing.T) {
	dir := t.TempDir()
	fs := &logDirSyncFS{FS: vfs.Default, dir: filepath.Clean(dir)}
	b := startBrokerOpts(t, dir, Options{FS: fs})
	const first, total = 200, 300
	before := fs.syncs.Load()
	createTopic(t, b, "wide", first, nil)
	if got := fs.syncs.Load() - before; got > 5 {
		t.Fatalf("creating a topic of %d partitions fsynced the log dir %d times", first, got)
	}
	before = fs.syncs.Load()
	rs, err := b.admin(t).UpdatePartitions(ctxT(t), total, "wide")
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := rs.On("wide", nil); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := fs.syncs.Load() - before; got > 5 {
		t.Fatalf("adding %d partitions fsynced the log dir %d times", total-first, got)
	}
	cl := b.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	recs := make([]*kgo.Record, 0, total)
	for p := range int32(total) {
		recs = append(recs, &kgo.Record{Topic: "wide", Partition: p, Value: []byte(fmt.Sprint(p))})
	}
	if err := cl.ProduceSync(ctxT(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
