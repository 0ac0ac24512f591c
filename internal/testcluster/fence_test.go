package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Hostile and failing inter-broker paths: forged controller requests are
// refused, and a replica whose log cannot be created is taken out of
// service by the controller.

// zkController reads /controller and /controller_epoch.
func zkController(t *testing.T, c *Cluster) (id, epoch int32) {
	t.Helper()
	zkc := c.ZKConn()
	data, _, err := zkc.Get("/kvlog/controller")
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		BrokerID int32 `json:"brokerid"`
	}
	if err := json.Unmarshal(data, &j); err != nil {
		t.Fatal(err)
	}
	edata, _, err := zkc.Get("/kvlog/controller_epoch")
	if err != nil {
		t.Fatal(err)
	}
	e, err := strconv.Atoi(string(edata))
	if err != nil {
		t.Fatal(err)
	}
	return j.BrokerID, int32(e)
}

// zkBrokerEpoch is broker id's broker epoch: the czxid of its registration.
func zkBrokerEpoch(t *testing.T, c *Cluster, id int32) int64 {
	t.Helper()
	_, st, err := c.ZKConn().Get(fmt.Sprintf("/kvlog/brokers/ids/%d", id))
	if err != nil {
		t.Fatal(err)
	}
	return st.Czxid
}

// produceValues produces n records to topic (acks=all) and returns their
// values.
func produceValues(t *testing.T, c *Cluster, topic string, n int) []string {
	t.Helper()
	cl := c.Client(kgo.DefaultProduceTopic(topic), kgo.RecordRetries(20))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var vals []string
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("%s-%d", topic, i)
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i % 5)), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
		vals = append(vals, v)
	}
	return vals
}

// readValues reads every record of topic up to its end offsets.
func readValues(t *testing.T, c *Cluster, topic string) []string {
	t.Helper()
	var out []string
	for _, r := range ReadAll(t, c, topic) {
		out = append(out, r.value)
	}
	slices.Sort(out)
	return out
}

func topErr(resp kmsg.Response) error {
	switch r := resp.(type) {
	case *kmsg.StopReplicaResponse:
		return kerr.ErrorForCode(r.ErrorCode)
	case *kmsg.LeaderAndISRResponse:
		return kerr.ErrorForCode(r.ErrorCode)
	case *kmsg.UpdateMetadataResponse:
		return kerr.ErrorForCode(r.ErrorCode)
	case *kmsg.ControlledShutdownResponse:
		return kerr.ErrorForCode(r.ErrorCode)
	}
	return fmt.Errorf("unexpected response %T", resp)
}

// An ordinary client forging controller requests (StopReplica with delete,
// LeaderAndIsr, UpdateMetadata, each with a controller epoch far ahead of
// ZooKeeper's, or the right epoch under another controller id, or a wrong
// broker epoch) and ControlledShutdown for another broker is refused: the
// data and the partition state are intact, the bogus epoch is not adopted,
// and the real controller still works afterwards.
func TestForgedControllerRequestsRefused(t *testing.T) {
	c := startCluster(t)
	createTopic(t, c, "precious", 1)
	want := produceValues(t, c, "precious", 20)
	slices.Sort(want)
	before, err := partitions(c, "precious")
	if err != nil {
		t.Fatal(err)
	}
	target := before[0].Leader // the worst place to lose the log
	ctlID, ctlEpoch := zkController(t, c)
	brokerEpoch := zkBrokerEpoch(t, c, target)
	wrongID := int32(-1)
	for _, id := range c.IDs() {
		if id != ctlID {
			wrongID = id
		}
	}

	stopReplica := func(ctl, epoch int32, be int64) kmsg.Request {
		req := kmsg.NewPtrStopReplicaRequest()
		req.Version = 3
		req.ControllerID, req.ControllerEpoch, req.BrokerEpoch = ctl, epoch, be
		rt := kmsg.NewStopReplicaRequestTopic()
		rt.Topic = "precious"
		ps := kmsg.NewStopReplicaRequestTopicPartitionState()
		ps.Partition, ps.LeaderEpoch, ps.Delete = 0, -2, true
		rt.PartitionStates = append(rt.PartitionStates, ps)
		req.Topics = append(req.Topics, rt)
		return req
	}
	leaderAndIsr := func(ctl, epoch int32, be int64) kmsg.Request {
		req := kmsg.NewPtrLeaderAndISRRequest()
		req.Version = 4
		req.ControllerID, req.ControllerEpoch, req.BrokerEpoch = ctl, epoch, be
		ts := kmsg.NewLeaderAndISRRequestTopicState()
		ts.Topic = "precious"
		ps := kmsg.NewLeaderAndISRRequestTopicPartition()
		ps.Topic, ps.Partition = "precious", 0
		ps.ControllerEpoch = epoch
		ps.Leader, ps.LeaderEpoch = wrongID, math.MaxInt32-1 // follow someone else, at an epoch nobody reaches
		ps.ISR, ps.Replicas = []int32{wrongID}, before[0].Replicas
		ts.PartitionStates = append(ts.PartitionStates, ps)
		req.TopicStates = append(req.TopicStates, ts)
		return req
	}
	updateMetadata := func(ctl, epoch int32, be int64) kmsg.Request {
		req := kmsg.NewPtrUpdateMetadataRequest()
		req.Version = 6
		req.ControllerID, req.ControllerEpoch, req.BrokerEpoch = ctl, epoch, be
		return req // no brokers, no topics: would empty the metadata cache
	}
	type forgery struct {
		name string
		req  kmsg.Request
		want error
	}
	var forgeries []forgery
	for api, mk := range map[string]func(int32, int32, int64) kmsg.Request{
		"StopReplica(delete)": stopReplica, "LeaderAndIsr": leaderAndIsr, "UpdateMetadata": updateMetadata,
	} {
		forgeries = append(forgeries,
			forgery{api + " epoch MaxInt32", mk(ctlID, math.MaxInt32, brokerEpoch), kerr.StaleControllerEpoch},
			forgery{api + " next epoch", mk(ctlID, ctlEpoch+1, brokerEpoch), kerr.StaleControllerEpoch},
			forgery{api + " wrong controller id", mk(wrongID, ctlEpoch, brokerEpoch), kerr.StaleControllerEpoch},
			forgery{api + " no broker epoch", mk(ctlID, ctlEpoch, -1), kerr.StaleBrokerEpoch},
			forgery{api + " future broker epoch", mk(ctlID, ctlEpoch, brokerEpoch+1<<20), kerr.StaleBrokerEpoch},
		)
	}
	for _, f := range forgeries {
		resp, err := c.RequestTo(target, f.req, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		if got := topErr(resp); got != f.want {
			t.Errorf("%s: got %v, want %v", f.name, got, f.want)
		}
	}
	// ControlledShutdown naming the target, sent to the controller by a
	// client: without an epoch (v1) and with a wrong one.
	for _, cs := range []struct {
		version int16
		epoch   int64
	}{{1, -1}, {3, brokerEpoch + 1}, {3, brokerEpoch - 1}} {
		req := kmsg.NewPtrControlledShutdownRequest()
		req.Version = cs.version
		req.BrokerID, req.BrokerEpoch = target, cs.epoch
		resp, err := c.RequestTo(ctlID, req, 40*time.Second)
		if err != nil {
			t.Fatalf("ControlledShutdown v%d: %v", cs.version, err)
		}
		if got := topErr(resp); got != kerr.StaleBrokerEpoch {
			t.Errorf("ControlledShutdown v%d broker epoch %d: got %v, want STALE_BROKER_EPOCH", cs.version, cs.epoch, got)
		}
	}

	// Nothing changed.
	if fi, err := os.Stat(filepath.Join(c.Broker(target).Dir, "data", "precious-0")); err != nil || !fi.IsDir() {
		t.Errorf("broker %d lost precious-0's directory: %v", target, err)
	}
	after, err := partitions(c, "precious")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := after[0], before[0]; a.Leader != b.Leader || a.LeaderEpoch != b.LeaderEpoch || len(a.ISR) != len(b.ISR) {
		t.Errorf("partition state changed: before leader %d epoch %d ISR %v, after leader %d epoch %d ISR %v",
			b.Leader, b.LeaderEpoch, b.ISR, a.Leader, a.LeaderEpoch, a.ISR)
	}
	for _, id := range c.IDs() {
		if got := metric(c.Broker(id).HTTP, "kvlog_controller_epoch"); got != strconv.Itoa(int(ctlEpoch)) {
			t.Errorf("broker %d reports controller epoch %s, ZooKeeper has %d", id, got, ctlEpoch)
		}
	}
	if got := readValues(t, c, "precious"); !slices.Equal(got, want) {
		t.Errorf("precious holds %d records, want %d: %v", len(got), len(want), got)
	}
	if !strings.Contains(c.Broker(target).Logs(), "refused inter-broker request") {
		t.Errorf("broker %d did not log the refusals", target)
	}

	// The real controller still works: a new topic gets leaders and full
	// ISRs, and takes writes.
	createTopic(t, c, "later", 3)
	wantLater := produceValues(t, c, "later", 30)
	slices.Sort(wantLater)
	if got := readValues(t, c, "later"); !slices.Equal(got, wantLater) {
		t.Errorf("later holds %v, want %v", got, wantLater)
	}
}

// A broker that cannot create a partition's log (here: a regular file
// where the partition's directory goes) answers KAFKA_STORAGE_ERROR and
// logs at ERROR; the controller takes that replica offline: another leader
// for the partition it would have led, out of every ISR, listed as an
// offline replica, and the partitions keep working on the other brokers.
func TestUnopenableReplicaTakenOffline(t *testing.T) {
	c := startCluster(t)
	ctlID := controllerID(t, c)
	broken := int32(-1)
	for _, id := range c.IDs() {
		if id != ctlID {
			broken = id // a plain broker: its LeaderAndIsr answers travel
		}
	}
	const topic = "frail"
	const nparts = 3
	// RF 3 on 3 brokers: the broken broker hosts every partition and is the
	// preferred (first) leader of one of them.
	for p := 0; p < nparts; p++ {
		f := filepath.Join(c.Broker(broken).Dir, "data", fmt.Sprintf("%s-%d", topic, p))
		if err := os.WriteFile(f, []byte("not a directory\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Admin().CreateTopic(ctx, nparts, 3, nil, topic)
	if err != nil || res.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, res.Err)
	}
	var last string
	c.WaitFor(30*time.Second, "the broken replica out of service", func() bool {
		ps, err := partitions(c, topic)
		if err != nil || len(ps) != nparts {
			last = fmt.Sprint(err)
			return false
		}
		last = fmt.Sprint(ps)
		for _, p := range ps {
			if p.Leader < 0 || p.Leader == broken || slices.Contains(p.ISR, broken) || len(p.ISR) != 2 ||
				!slices.Contains(p.OfflineReplicas, broken) {
				return false
			}
		}
		return true
	})
	t.Logf("metadata: %s", last)
	want := produceValues(t, c, topic, 30)
	slices.Sort(want)
	if got := readValues(t, c, topic); !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", topic, got, want)
	}
	logs := c.Broker(broken).Logs()
	if !strings.Contains(logs, `level=ERROR msg="partition state refused"`) || !strings.Contains(logs, "KAFKA_STORAGE_ERROR") {
		t.Errorf("broker %d did not log the storage failure at ERROR", broken)
	}
}
