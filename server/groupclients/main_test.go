package groupclients

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Main(m)) }

// startKvlogd starts kvlogd (built with -race, no HTTP listener) with
// groupProps and a fresh data directory, and waits until it serves.
func startKvlogd(t *testing.T) *testbroker.Broker {
	t.Helper()
	return testbroker.Start(t, testbroker.Options{
		Race:        true,
		NoHTTP:      true,
		Props:       groupProps,
		StopTimeout: 60 * time.Second,
	})
}

// groupProps are the broker settings of these tests: quick first
// rebalances and short sessions allowed; everything else is the default
// (offsets.topic.num.partitions 50, fsync of acks=all writes).
var groupProps = []string{
	"group.initial.rebalance.delay.ms=300",
	"group.min.session.timeout.ms=1000",
}

func createTopic(t *testing.T, p *testbroker.Broker, name string, partitions int32) {
	t.Helper()
	resp, err := p.Admin(t).CreateTopic(testbroker.Context(t, 30*time.Second), partitions, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, name)
	if err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", name, err, resp.Err)
	}
}

// produce writes values v<from>..v<from+n-1> keyed k<i>.
func produce(t *testing.T, p *testbroker.Broker, topic string, from, n int) {
	t.Helper()
	cl := p.Client(t, kgo.DefaultProduceTopic(topic))
	var rs []*kgo.Record
	for i := from; i < from+n; i++ {
		rs = append(rs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	if err := cl.ProduceSync(testbroker.Context(t, 60*time.Second), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
}

// committed returns the group's committed offsets and the topic's end
// offsets, by partition.
func committed(t *testing.T, p *testbroker.Broker, group, topic string) (map[int32]int64, map[int32]int64) {
	t.Helper()
	ctx := testbroker.Context(t, 30*time.Second)
	adm := p.Admin(t)
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch offsets: %v", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	c, e := map[int32]int64{}, map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			c[o.Partition] = o.At
		}
	})
	ends.Each(func(o kadm.ListedOffset) { e[o.Partition] = o.Offset })
	return c, e
}

// requireCaughtUp fails unless every partition's committed offset is its
// end offset.
func requireCaughtUp(t *testing.T, p *testbroker.Broker, group, topic string) map[int32]int64 {
	t.Helper()
	c, e := committed(t, p, group, topic)
	if fmt.Sprint(c) != fmt.Sprint(e) {
		t.Fatalf("group %s committed %v, topic %s ends at %v", group, c, topic, e)
	}
	return c
}

// valueIndex parses "v<i>".
func valueIndex(t *testing.T, v string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(v, "v%d", &i); err != nil {
		t.Fatalf("unexpected value %q", v)
	}
	return i
}
