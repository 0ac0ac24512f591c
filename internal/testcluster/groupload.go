package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
)

// GroupReader is a consumer group reading one workload's topic while it is
// written: members consume from the start, auto-commit every 500 ms (and
// on revocation), and are replaced one at a time now and then, so the group
// rebalances and new members resume from committed offsets. It records
// every record a member reads, every commit acknowledged to a member, and
// (a monitor) the group's committed offsets as OffsetFetch returns them.
//
// The monitor asks the group's coordinator as ZooKeeper names it: the
// leader of the group's __consumer_offsets partition, unchanged (same
// leader and leader epoch) from before the request was sent to after it
// was answered. A deposed coordinator that has not yet learned of its
// successor (paused or cut off meanwhile) may answer stale offsets, as a
// cut-off leader serves stale reads; those answers are not the group's
// committed offsets and are not recorded.
type GroupReader struct {
	c      *Cluster
	group  string
	topic  string
	prefix string // the workload's value prefix
	start  time.Time
	zkc    *zk.Conn
	state  string // the state znode of the group's __consumer_offsets partition

	mu sync.Mutex
	// reads[p][o] is 1 + the sequence number of the value a member read at
	// offset o of partition p (0: never read); readAt the first read's time
	// in ms since start.
	reads    map[int32][]int32
	readAt   map[int32][]int32
	polled   int
	conflict []Anomaly // an offset read with two different values
	commits  map[int32][]groupObs
	fetches  map[int32][]groupObs
	members  []*kgo.Client
	joins    int

	cancel context.CancelFunc
	done   chan struct{}
}

// groupObs is a committed offset: acknowledged to a member (start = end =
// the acknowledgement), or returned by an OffsetFetch sent at start and
// answered at end.
type groupObs struct {
	offset     int64
	start, end time.Time
}

// StartGroupReader starts members consumers of w's topic in groupID, whose
// __consumer_offsets topic has offsetsPartitions partitions.
func StartGroupReader(c *Cluster, w *Workload, groupID string, members int, offsetsPartitions int32) *GroupReader {
	ctx, cancel := context.WithCancel(context.Background())
	g := &GroupReader{c: c, group: groupID, topic: w.topic, prefix: w.id, start: time.Now(), zkc: c.ZKConn(),
		state: fmt.Sprintf("/kvlog/brokers/topics/__consumer_offsets/partitions/%d/state", group.PartitionFor(groupID, offsetsPartitions)),
		reads: map[int32][]int32{}, readAt: map[int32][]int32{}, commits: map[int32][]groupObs{}, fetches: map[int32][]groupObs{},
		cancel: cancel, done: make(chan struct{})}
	for i := 0; i < members; i++ {
		g.members = append(g.members, g.newMember())
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.monitor(ctx) }()
	go func() { defer wg.Done(); g.churn(ctx) }()
	go func() {
		wg.Wait()
		close(g.done)
	}()
	return g
}

func (g *GroupReader) newMember() *kgo.Client {
	g.mu.Lock()
	g.joins++
	g.mu.Unlock()
	opts := []kgo.Opt{kgo.SeedBrokers(g.c.AllSeeds()...), kgo.ConsumerGroup(g.group), kgo.ConsumeTopics(g.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.AutoCommitInterval(500 * time.Millisecond), kgo.SessionTimeout(10 * time.Second),
		kgo.RebalanceTimeout(10 * time.Second), kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
		kgo.AutoCommitCallback(g.committed)}
	if g.c.opts.Net != nil {
		opts = append(opts, kgo.Dialer(g.c.opts.Net.DialContext))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		panic(err) // options are static
	}
	go func() {
		for {
			fs := cl.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			g.record(fs)
		}
	}()
	return cl
}

// committed records the partitions a commit acknowledged.
func (g *GroupReader) committed(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
	if err != nil || resp == nil {
		return
	}
	now := time.Now()
	sent := map[int32]int64{}
	for _, t := range req.Topics {
		if t.Topic != g.topic {
			continue
		}
		for _, p := range t.Partitions {
			sent[p.Partition] = p.Offset
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range resp.Topics {
		if t.Topic != g.topic {
			continue
		}
		for _, p := range t.Partitions {
			if o, ok := sent[p.Partition]; ok && p.ErrorCode == 0 {
				g.commits[p.Partition] = append(g.commits[p.Partition], groupObs{o, now, now})
			}
		}
	}
}

func (g *GroupReader) record(fs kgo.Fetches) {
	ms := int32(time.Since(g.start).Milliseconds())
	g.mu.Lock()
	defer g.mu.Unlock()
	fs.EachRecord(func(r *kgo.Record) {
		v := string(r.Value)
		if !strings.HasPrefix(v, g.prefix) {
			return
		}
		g.polled++
		seq := int32(seqOf(v)) + 1
		rs := g.reads[r.Partition]
		for int64(len(rs)) <= r.Offset {
			rs = append(rs, 0)
			g.readAt[r.Partition] = append(g.readAt[r.Partition], 0)
		}
		g.reads[r.Partition] = rs
		switch prev := rs[r.Offset]; {
		case prev == 0:
			rs[r.Offset] = seq
			g.readAt[r.Partition][r.Offset] = ms
		case prev != seq:
			g.conflict = append(g.conflict, Anomaly{"inconsistent-offset", v, r.Partition, r.Offset,
				fmt.Sprintf("consumers read seq %d and seq %d at this offset", prev-1, seq-1), time.Now()})
		}
	})
}

// monitor fetches the group's committed offsets every 300 ms.
func (g *GroupReader) monitor(ctx context.Context) {
	for ctx.Err() == nil {
		g.fetchOnce()
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// coordinator reads the leader and leader epoch of the group's partition.
func (g *GroupReader) coordinator() (leader, epoch int32, ok bool) {
	data, _, err := g.zkc.Get(g.state)
	if err != nil {
		return -1, -1, false
	}
	var st struct {
		Leader      int32 `json:"leader"`
		LeaderEpoch int32 `json:"leader_epoch"`
	}
	if json.Unmarshal(data, &st) != nil || st.Leader < 0 {
		return -1, -1, false
	}
	return st.Leader, st.LeaderEpoch, true
}

// fetchOnce sends one OffsetFetch to the coordinator ZooKeeper names, and
// records its answer if that coordinator did not change meanwhile.
func (g *GroupReader) fetchOnce() bool {
	start := time.Now()
	leader, epoch, ok := g.coordinator()
	if !ok {
		return false
	}
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 5
	req.Group = g.group
	resp, err := g.c.RequestTo(leader, req, 3*time.Second)
	if err != nil {
		return false
	}
	end := time.Now()
	if l, e, ok := g.coordinator(); !ok || l != leader || e != epoch {
		return false
	}
	r := resp.(*kmsg.OffsetFetchResponse)
	if r.ErrorCode != 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range r.Topics {
		if t.Topic != g.topic {
			continue
		}
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 && p.Offset >= 0 {
				g.fetches[p.Partition] = append(g.fetches[p.Partition], groupObs{p.Offset, start, end})
			}
		}
	}
	return true
}

// churn replaces a random member every 15 s.
func (g *GroupReader) churn(ctx context.Context) {
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(15 * time.Second):
		}
		g.mu.Lock()
		k := i % len(g.members)
		old := g.members[k]
		g.mu.Unlock()
		old.Close() // leaves the group, committing on revoke
		nm := g.newMember()
		g.mu.Lock()
		g.members[k] = nm
		g.mu.Unlock()
	}
}

// Polled is how many records the members read.
func (g *GroupReader) Polled() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.polled
}

// CaughtUp reports whether the group's committed offsets reached ends.
func (g *GroupReader) CaughtUp(ends map[int32]int64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p, end := range ends {
		fs := g.fetches[p]
		if end > 0 && (len(fs) == 0 || fs[len(fs)-1].offset < end) {
			return false
		}
	}
	return true
}

// Stop stops the monitor and churn, then closes the members.
func (g *GroupReader) Stop() {
	g.cancel()
	<-g.done
	// One last look at the committed offsets before members leave.
	for i := 0; i < 50 && !g.fetchOnce(); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	g.mu.Lock()
	ms := g.members
	g.mu.Unlock()
	for _, m := range ms {
		m.Close()
	}
}

// GroupReport counts the anomalies of what consumers saw.
type GroupReport struct {
	Polled, Joins, Commits, Fetches int
	DirtyReads                      int // read by a consumer, absent from the final read (read above the eventual HW)
	ChangedOffsets                  int // read by a consumer at one offset, at another (or not at that one) in the final read
	Skipped                         int // below the group's final committed offset in the final read, never delivered to a member
	OffsetRegressions               int // a committed offset lower than one acknowledged or fetched before
	First                           map[string]Anomaly
}

func (r GroupReport) String() string {
	return fmt.Sprintf("polled=%d joins=%d commits-acked=%d offset-fetches=%d dirty-reads=%d changed-offsets=%d skipped=%d committed-offset-regressions=%d",
		r.Polled, r.Joins, r.Commits, r.Fetches, r.DirtyReads, r.ChangedOffsets, r.Skipped, r.OffsetRegressions)
}

// OK reports whether every anomaly count is zero.
func (r GroupReport) OK() bool {
	return r.DirtyReads == 0 && r.ChangedOffsets == 0 && r.Skipped == 0 && r.OffsetRegressions == 0
}

func (r *GroupReport) note(a Anomaly) {
	if r.First == nil {
		r.First = map[string]Anomaly{}
	}
	if _, ok := r.First[a.Class]; !ok {
		r.First[a.Class] = a
	}
}

// Check compares what the members read and the offsets committed with the
// final read of the topic (ReadAll after every fault healed).
func (g *GroupReader) Check(final []readRec) GroupReport {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := GroupReport{Polled: g.polled, Joins: g.joins}
	// Final read: partition → offset → seq+1, and value → (partition, offset).
	fin := map[int32]map[int64]int32{}
	type pos struct {
		p int32
		o int64
	}
	where := map[int32]pos{}
	for _, rr := range final {
		if !strings.HasPrefix(rr.value, g.prefix) {
			continue
		}
		if fin[rr.partition] == nil {
			fin[rr.partition] = map[int64]int32{}
		}
		seq := int32(seqOf(rr.value)) + 1
		fin[rr.partition][rr.offset] = seq
		where[seq] = pos{rr.partition, rr.offset}
	}
	for _, a := range g.conflict {
		r.ChangedOffsets++
		r.note(a)
	}
	parts := make([]int32, 0, len(g.reads))
	for p := range g.reads {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	for _, p := range parts {
		for o, seq := range g.reads[p] {
			if seq == 0 {
				continue
			}
			val := fmt.Sprintf("%s…/%d", g.prefix, seq-1)
			readAt := g.start.Add(time.Duration(g.readAt[p][o]) * time.Millisecond)
			got, ok := fin[p][int64(o)]
			at, found := where[seq]
			switch {
			case ok && got == seq:
			case !found:
				r.DirtyReads++
				r.note(Anomaly{"dirty-read", val, p, int64(o), "read by a consumer at " + readAt.Format("15:04:05.000") + ", absent from the final read", readAt})
			default:
				r.ChangedOffsets++
				r.note(Anomaly{"changed-offset", val, p, int64(o), fmt.Sprintf("read by a consumer here at %s, final read has it at %d/%d", readAt.Format("15:04:05.000"), at.p, at.o), readAt})
			}
		}
	}
	for _, obs := range g.commits {
		r.Commits += len(obs)
	}
	for p, fs := range g.fetches {
		r.Fetches += len(fs)
		commits := append([]groupObs(nil), g.commits[p]...)
		sort.Slice(commits, func(i, j int) bool { return commits[i].end.Before(commits[j].end) })
		var best groupObs // the highest offset known committed before a fetch was sent
		var bestFrom string
		ci := 0
		for i, f := range fs {
			for ci < len(commits) && commits[ci].end.Before(f.start) {
				if commits[ci].offset > best.offset {
					best, bestFrom = commits[ci], "acknowledged to a member"
				}
				ci++
			}
			if i > 0 && fs[i-1].end.Before(f.start) && fs[i-1].offset > best.offset {
				best, bestFrom = fs[i-1], "returned by the previous OffsetFetch"
			}
			if f.offset < best.offset {
				r.OffsetRegressions++
				r.note(Anomaly{"committed-offset-regression", "", p, f.offset, fmt.Sprintf("OffsetFetch sent %s returned %d; %d was %s at %s",
					f.start.Format("15:04:05.000"), f.offset, best.offset, bestFrom, best.end.Format("15:04:05.000")), f.start})
			}
		}
		// Skips: below the final committed offset, in the final read, never read.
		if len(fs) > 0 {
			last := fs[len(fs)-1].offset
			for o, seq := range fin[p] {
				if o >= last {
					continue
				}
				rs := g.reads[p]
				if o >= int64(len(rs)) || rs[o] == 0 {
					r.Skipped++
					r.note(Anomaly{"skipped", fmt.Sprintf("%s…/%d", g.prefix, seq-1), p, o, fmt.Sprintf("below the group's committed offset %d, never delivered to a member", last), time.Time{}})
				}
			}
		}
	}
	return r
}
