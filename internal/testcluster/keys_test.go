package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// keyAnswer is one HTTP lookup of a broker.
type keyAnswer struct {
	status       int
	value        string
	offset       int64
	stableOffset int64
	leader       int32 // from a NOT_LEADER_OR_FOLLOWER answer
}

func lookupAt(b *Broker, topic, key string) (keyAnswer, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + b.HTTP + "/v1/topics/" + topic + "/keys/" + key)
	if err != nil {
		return keyAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return keyAnswer{}, err
	}
	a := keyAnswer{status: resp.StatusCode, leader: -1}
	switch resp.StatusCode {
	case http.StatusOK:
		a.value = string(body)
		a.offset, _ = strconv.ParseInt(resp.Header.Get("X-Kvlog-Offset"), 10, 64)
		a.stableOffset, _ = strconv.ParseInt(resp.Header.Get("X-Kvlog-Stable-Offset"), 10, 64)
	case http.StatusServiceUnavailable:
		var e struct {
			Error  string `json:"error"`
			Leader *int32 `json:"leader"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error == "NOT_LEADER_OR_FOLLOWER" && e.Leader != nil {
			a.leader = *e.Leader
		}
	}
	return a, nil
}

// TestClusterKeyLookupFailover: HTTP lookups in a 3-broker cluster while
// an acks=all producer updates one key and its partition's leader is
// killed. Followers refuse with NOT_LEADER_OR_FOLLOWER naming the leader
// (brokers on one host: no redirect to guess); the leader answers values
// that were written, at offsets below the stable offset it reports, and
// never older than a value acknowledged before the lookup was sent; after
// the fail-over the new leader answers the last acknowledged value.
func TestClusterKeyLookupFailover(t *testing.T) {
	c := startCluster(t)
	createTopic(t, c, "kv", 1)
	leader, epoch := leaderOf(t, c, "kv", 0)
	for _, id := range c.IDs() {
		if id == leader {
			continue
		}
		c.WaitFor(30*time.Second, "a follower's NOT_LEADER_OR_FOLLOWER", func() bool {
			a, err := lookupAt(c.Broker(id), "kv", "k")
			return err == nil && a.status == http.StatusServiceUnavailable && a.leader == leader
		})
	}
	cl := c.Client(kgo.DefaultProduceTopic("kv"), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(1000))
	defer cl.Close()
	var acked atomic.Int64 // last round acknowledged
	var sent atomic.Int64  // last round sent
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := int64(1); ctx.Err() == nil; r++ {
			sent.Store(r)
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			err := cl.ProduceSync(pctx, &kgo.Record{Key: []byte("k"), Value: []byte(fmt.Sprintf("round-%d", r))}).FirstErr()
			pcancel()
			if err != nil {
				return
			}
			acked.Store(r)
		}
	}()
	var bad atomic.Pointer[string]
	checked := atomic.Int64{}
	check := func(id int32) {
		before := acked.Load()
		a, err := lookupAt(c.Broker(id), "kv", "k")
		if err != nil || a.status != http.StatusOK {
			return // a broker down or no longer leading
		}
		round, perr := strconv.ParseInt(strings.TrimPrefix(a.value, "round-"), 10, 64)
		var why string
		switch {
		case perr != nil || round < 1 || round > sent.Load():
			why = fmt.Sprintf("broker %d answered %q, never written", id, a.value)
		case a.offset >= a.stableOffset:
			why = fmt.Sprintf("broker %d answered offset %d at or above its stable offset %d", id, a.offset, a.stableOffset)
		case round < before && id == leader:
			// Only the first leader: a new leader's high watermark may
			// start behind what the old one acknowledged.
			why = fmt.Sprintf("leader %d answered round %d after round %d was acknowledged", id, round, before)
		}
		if why != "" {
			bad.CompareAndSwap(nil, &why)
		}
		checked.Add(1)
	}
	var current atomic.Int32 // the broker the reader asks
	current.Store(leader)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			check(current.Load())
		}
	}()
	c.WaitFor(30*time.Second, "acknowledged writes", func() bool { return acked.Load() >= 50 })
	c.Kill(leader)
	c.WaitFor(30*time.Second, "a new leader", func() bool {
		ps, err := partitions(c, "kv")
		return err == nil && ps[0].Leader >= 0 && ps[0].Leader != leader && ps[0].LeaderEpoch > epoch
	})
	newLeader, _ := leaderOf(t, c, "kv", 0)
	current.Store(newLeader)
	for _, id := range c.IDs() {
		if id != leader {
			check(id)
		}
	}
	resumed := acked.Load()
	c.WaitFor(30*time.Second, "writes to resume", func() bool { return acked.Load() > resumed+30 })
	cancel()
	wg.Wait()
	last := acked.Load()
	c.WaitFor(30*time.Second, "the last acknowledged value", func() bool {
		a, err := lookupAt(c.Broker(newLeader), "kv", "k")
		round, perr := strconv.ParseInt(strings.TrimPrefix(a.value, "round-"), 10, 64)
		return err == nil && a.status == http.StatusOK && perr == nil && round >= last
	})
	if p := bad.Load(); p != nil {
		t.Fatal(*p)
	}
	t.Logf("%d lookups checked, %d rounds acknowledged, leader %d → %d", checked.Load(), last, leader, newLeader)
}
