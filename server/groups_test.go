package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// Group coordinator tests against an in-process broker: franz-go consumer
// groups, kadm's group administration, and hand-made requests at the old
// versions kafka-python and kafka-go send.

// groupProps makes rebalances quick.
var groupProps = []string{"group.initial.rebalance.delay.ms=100", "group.min.session.timeout.ms=1000"}

func newGroupTopic(t *testing.T, b *testBroker, name string, partitions int32) {
	t.Helper()
	if _, err := b.admin(t).CreateTopic(ctxT(t), partitions, 1, nil, name); err != nil {
		t.Fatal(err)
	}
}

func produceKeys(t *testing.T, b *testBroker, topic string, from, n int) {
	t.Helper()
	cl := b.client(t, kgo.DefaultProduceTopic(topic))
	var rs []*kgo.Record
	for i := from; i < from+n; i++ {
		rs = append(rs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	if err := cl.ProduceSync(ctxT(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// consumeGroup reads with a group member until want distinct values were
// seen, committing what it read, and closes the member (leaving the group).
func consumeGroup(t *testing.T, b *testBroker, group, topic string, want int, opts ...kgo.Opt) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(b.addr),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(6 * time.Second),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := ctxT(t)
	seen := map[string]int{}
	for len(seen) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("group %s consumed %d of %d", group, len(seen), want)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	return seen
}

func TestGroupConsumeCommitResume(t *testing.T) {
	b := startBroker(t, groupProps...)
	for _, name := range []string{"latest", "v2.3"} {
		t.Run(name, func(t *testing.T) {
			topic := "events-" + name
			newGroupTopic(t, b, topic, 3)
			produceKeys(t, b, topic, 0, 60)
			var opts []kgo.Opt
			if name != "latest" {
				opts = append(opts, kgo.MaxVersions(kversion.V2_3_0())) // non-flexible group APIs
			}
			grp := "resume-" + name
			if got := consumeGroup(t, b, grp, topic, 60, opts...); len(got) != 60 {
				t.Fatalf("first pass: %d", len(got))
			}
			// Committed offsets are where the next member starts.
			offs, err := b.admin(t).FetchOffsets(ctxT(t), grp)
			if err != nil {
				t.Fatal(err)
			}
			var sum int64
			offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
			if sum != 60 {
				t.Fatalf("committed offsets sum to %d, want 60", sum)
			}
			produceKeys(t, b, topic, 60, 15)
			got := consumeGroup(t, b, grp, topic, 15, opts...)
			for v := range got {
				var i int
				fmt.Sscanf(v, "v%d", &i)
				if i < 60 {
					t.Fatalf("resumed member re-read %s", v)
				}
			}
		})
	}
}

// Three members, joining and leaving while records flow: every record is
// consumed, and after the churn the group is stable with the remaining
// members.
func TestGroupRebalanceChurn(t *testing.T) {
	b := startBroker(t, groupProps...)
	newGroupTopic(t, b, "churn", 6)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	member := func(stop <-chan struct{}) chan struct{} {
		done := make(chan struct{})
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumerGroup("churn"), kgo.ConsumeTopics("churn"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond),
			kgo.AutoCommitInterval(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(done)
			defer cl.Close() // commits and leaves
			for {
				select {
				case <-stop:
					return
				default:
				}
				pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
				fs := cl.PollFetches(pctx)
				pcancel()
				fs.EachRecord(func(r *kgo.Record) {
					mu.Lock()
					seen[string(r.Value)] = true
					mu.Unlock()
				})
			}
		}()
		return done
	}
	stops := make([]chan struct{}, 3)
	dones := make([]chan struct{}, 3)
	for i := range stops {
		stops[i] = make(chan struct{})
		dones[i] = member(stops[i])
		produceKeys(t, b, "churn", i*40, 40)
		// Each join is a rebalance of its own: the next member starts once
		// this one is in a stable generation.
		waitStableGroup(t, b, ctx, "churn", i+1)
	}
	// One leaves, another joins in its place.
	close(stops[0])
	<-dones[0]
	produceKeys(t, b, "churn", 120, 40)
	stops[0] = make(chan struct{})
	dones[0] = member(stops[0])
	produceKeys(t, b, "churn", 160, 40)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 200 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 200", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitStableGroup(t, b, ctx, "churn", 3)
	adm := b.admin(t)
	for i := range stops {
		close(stops[i])
		<-dones[i]
	}
	dg, _ := adm.DescribeGroups(ctx, "churn")
	if g := dg["churn"]; g.State != "Empty" {
		t.Fatalf("after everyone left: %s", g.State)
	}
}

// waitStableGroup polls DescribeGroups until group is Stable with members
// members (for up to 30 s).
func waitStableGroup(t *testing.T, b *testBroker, ctx context.Context, group string, members int) {
	t.Helper()
	adm := b.admin(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		dg, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		g := dg[group]
		if g.State == "Stable" && len(g.Members) == members {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: %s with %d members, want Stable with %d", group, g.State, len(g.Members), members)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestGroupAdmin(t *testing.T) {
	b := startBroker(t, groupProps...)
	newGroupTopic(t, b, "adm", 2)
	ctx := ctxT(t)
	adm := b.admin(t)
	// Offsets committed without a group member (generation -1).
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: "adm", Partition: 0, At: 5, LeaderEpoch: -1, Metadata: "m"})
	os.Add(kadm.Offset{Topic: "adm", Partition: 1, At: 7, LeaderEpoch: -1})
	os.Add(kadm.Offset{Topic: "missing", Partition: 0, At: 1, LeaderEpoch: -1})
	resp, err := adm.CommitOffsets(ctx, "manual", os)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := resp.Lookup("adm", 0); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r, _ := resp.Lookup("missing", 0); r.Err != kerr.UnknownTopicOrPartition {
		t.Fatalf("commit to a missing topic: %v", r.Err)
	}
	fetched, err := adm.FetchOffsets(ctx, "manual")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := fetched.Lookup("adm", 0); o.At != 5 || o.Metadata != "m" {
		t.Fatalf("fetched %+v", o)
	}
	lg, err := adm.ListGroups(ctx)
	if err != nil || !contains(lg.Groups(), "manual") {
		t.Fatalf("list groups: %v %v", lg.Groups(), err)
	}
	dg, err := adm.DescribeGroups(ctx, "manual", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if dg["manual"].State != "Empty" || dg["nobody"].State != "Dead" {
		t.Fatalf("describe: %+v", dg)
	}
	dr, err := adm.DeleteOffsets(ctx, "manual", kadm.TopicsSet{"adm": {1: {}}})
	if err != nil || dr.Error() != nil {
		t.Fatalf("delete offsets: %v %v", err, dr.Error())
	}
	fetched, _ = adm.FetchOffsets(ctx, "manual")
	if _, ok := fetched.Lookup("adm", 1); ok {
		t.Fatal("deleted offset still fetched")
	}
	// A group with a live member cannot be deleted.
	cl := b.client(t, kgo.ConsumerGroup("live"), kgo.ConsumeTopics("adm"))
	cl.PollFetches(ctxShort(t, 2*time.Second))
	del, err := adm.DeleteGroups(ctx, "manual", "live", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if del["manual"].Err != nil || del["live"].Err != kerr.NonEmptyGroup || del["nobody"].Err != kerr.GroupIDNotFound {
		t.Fatalf("delete groups: manual %v live %v nobody %v", del["manual"].Err, del["live"].Err, del["nobody"].Err)
	}
	lg, _ = adm.ListGroups(ctx)
	if contains(lg.Groups(), "manual") {
		t.Fatal("deleted group still listed")
	}
}

func ctxShort(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Offsets and group metadata survive a broker restart: they are replayed
// from __consumer_offsets.
func TestGroupOffsetsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	b := startBrokerIn(t, dir, groupProps...)
	newGroupTopic(t, b, "durable", 2)
	produceKeys(t, b, "durable", 0, 20)
	consumeGroup(t, b, "g", "durable", 20)
	b.stop(t)

	b = startBrokerIn(t, dir, groupProps...)
	offs, err := b.admin(t).FetchOffsets(ctxT(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 20 {
		t.Fatalf("offsets after restart sum to %d, want 20", sum)
	}
	dg, _ := b.admin(t).DescribeGroups(ctxT(t), "g")
	if g := dg["g"]; g.State != "Empty" || g.ProtocolType != "consumer" {
		t.Fatalf("group after restart: %+v", g)
	}
}

// The versions old clients send, by hand: JoinGroup v0 (no two-step), v4
// (MEMBER_ID_REQUIRED), SyncGroup v0, Heartbeat v0, OffsetCommit v2,
// OffsetFetch v1, LeaveGroup v0, FindCoordinator v0.
func TestGroupOldVersions(t *testing.T) {
	b := startBroker(t, "group.initial.rebalance.delay.ms=0", "group.min.session.timeout.ms=1000")
	newGroupTopic(t, b, "old", 1)
	c := b.dial(t)
	corr := int32(0)
	call := func(req kmsg.Request) kmsg.Response {
		t.Helper()
		corr++
		c.send(req, corr)
		return c.recv(req, corr)
	}
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "old-group"
	fcr := call(fc).(*kmsg.FindCoordinatorResponse)
	if fcr.ErrorCode != 0 || fcr.NodeID != 0 || fcr.Port == 0 {
		t.Fatalf("find coordinator: %+v", fcr)
	}

	jg := kmsg.NewPtrJoinGroupRequest()
	jg.Group = "old-group"
	jg.SessionTimeoutMillis = 10000
	jg.ProtocolType = "consumer"
	jg.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 0, 0, 0, 0, 1, 0, 3, 'o', 'l', 'd', 0, 0, 0, 0}}}
	jr := call(jg).(*kmsg.JoinGroupResponse)
	if jr.ErrorCode != 0 || jr.Generation != 1 || jr.MemberID == "" || jr.LeaderID != jr.MemberID || *jr.Protocol != "range" || len(jr.Members) != 1 {
		t.Fatalf("join v0: %+v", jr)
	}
	member := jr.MemberID

	sg := kmsg.NewPtrSyncGroupRequest()
	sg.Group, sg.Generation, sg.MemberID = "old-group", 1, member
	sg.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: member, MemberAssignment: []byte("x")}}
	if sr := call(sg).(*kmsg.SyncGroupResponse); sr.ErrorCode != 0 || string(sr.MemberAssignment) != "x" {
		t.Fatalf("sync v0: %+v", sr)
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.Generation, hb.MemberID = "old-group", 1, member
	if hr := call(hb).(*kmsg.HeartbeatResponse); hr.ErrorCode != 0 {
		t.Fatalf("heartbeat v0: %v", kerr.ErrorForCode(hr.ErrorCode))
	}
	hb.Generation = 7
	if hr := call(hb).(*kmsg.HeartbeatResponse); hr.ErrorCode != kerr.IllegalGeneration.Code {
		t.Fatalf("heartbeat with a wrong generation: %v", kerr.ErrorForCode(hr.ErrorCode))
	}

	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Version = 2
	oc.Group, oc.Generation, oc.MemberID, oc.RetentionTimeMillis = "old-group", 1, member, -1
	oc.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "old", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 3}}}}
	if ocr := call(oc).(*kmsg.OffsetCommitResponse); ocr.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("commit v2: %v", kerr.ErrorForCode(ocr.Topics[0].Partitions[0].ErrorCode))
	}
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Version = 1
	of.Group = "old-group"
	of.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "old", Partitions: []int32{0, 5}}}
	ofr := call(of).(*kmsg.OffsetFetchResponse)
	if ps := ofr.Topics[0].Partitions; len(ps) != 2 || ps[0].Offset != 3 || ps[1].Offset != -1 {
		t.Fatalf("fetch v1: %+v", ofr.Topics)
	}

	// JoinGroup v4: the two-step join.
	jg4 := kmsg.NewPtrJoinGroupRequest()
	jg4.Version = 4
	jg4.Group = "old-group"
	jg4.SessionTimeoutMillis, jg4.RebalanceTimeoutMillis = 10000, 10000
	jg4.ProtocolType, jg4.Protocols = "consumer", jg.Protocols
	j4 := call(jg4).(*kmsg.JoinGroupResponse)
	if j4.ErrorCode != kerr.MemberIDRequired.Code || j4.MemberID == "" {
		t.Fatalf("join v4 without id: %+v", j4)
	}
	// Rejoining with the id parks until the first member rejoins too
	// (another connection: this one answers in order).
	c2 := b.dial(t)
	jg4.MemberID = j4.MemberID
	c2.send(jg4, 1)
	waitGroupState(t, b, "old-group", "PreparingRebalance") // the rejoin is parked
	jg.MemberID = member
	jr = call(jg).(*kmsg.JoinGroupResponse)
	j4b := c2.recv(jg4, 1).(*kmsg.JoinGroupResponse)
	if jr.Generation != 2 || j4b.Generation != 2 || j4b.LeaderID != member || len(jr.Members) != 2 {
		t.Fatalf("rebalance: %+v / %+v", jr, j4b)
	}

	// LeaveGroup v0 of both.
	lg := kmsg.NewPtrLeaveGroupRequest()
	lg.Group, lg.MemberID = "old-group", member
	if lr := call(lg).(*kmsg.LeaveGroupResponse); lr.ErrorCode != 0 {
		t.Fatalf("leave v0: %v", kerr.ErrorForCode(lr.ErrorCode))
	}
	lg.MemberID = "nobody"
	if lr := call(lg).(*kmsg.LeaveGroupResponse); lr.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("leave v0 of a stranger: %v", kerr.ErrorForCode(lr.ErrorCode))
	}
	// A transaction coordinator lookup (v2) answers this broker.
	fc.Version, fc.CoordinatorType = 2, 1
	if r := call(fc).(*kmsg.FindCoordinatorResponse); r.ErrorCode != 0 || r.NodeID != b.s.cfg.NodeID {
		t.Fatalf("transaction coordinator: %+v", r)
	}
}

// waitGroupState polls DescribeGroups until group is in state (for up to
// 10 s).
func waitGroupState(t *testing.T, b *testBroker, group, state string) {
	t.Helper()
	adm, ctx := b.admin(t), ctxT(t)
	waitUntil(t, "group "+group+" "+state, func() bool {
		dg, err := adm.DescribeGroups(ctx, group)
		return err == nil && dg[group].State == state
	})
}

// Mixed assignors: a member sharing no protocol with the group is refused.
func TestGroupInconsistentProtocol(t *testing.T) {
	b := startBroker(t, groupProps...)
	newGroupTopic(t, b, "mixed", 1)
	cl := b.client(t, kgo.ConsumerGroup("mixed"), kgo.ConsumeTopics("mixed"), kgo.Balancers(kgo.RangeBalancer()))
	cl.PollFetches(ctxShort(t, 3*time.Second))
	c := b.dial(t)
	jg := kmsg.NewPtrJoinGroupRequest()
	jg.Version = 5
	jg.Group = "mixed"
	jg.SessionTimeoutMillis, jg.RebalanceTimeoutMillis = 10000, 10000
	jg.ProtocolType = "consumer"
	jg.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "cooperative-sticky", Metadata: []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}}
	c.send(jg, 1)
	if r := c.recv(jg, 1).(*kmsg.JoinGroupResponse); r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("join with another assignor: %v", kerr.ErrorForCode(r.ErrorCode))
	}
}

// Shutdown answers a JoinGroup parked in the coordinator (NOT_COORDINATOR:
// the client looks for the coordinator again) instead of waiting for it.
func TestGroupShutdownAnswersParkedJoin(t *testing.T) {
	b := startBroker(t, "group.initial.rebalance.delay.ms=60000")
	c := b.dial(t)
	jg := kmsg.NewPtrJoinGroupRequest()
	jg.Version = 3 // no two-step join
	jg.Group = "parked"
	jg.SessionTimeoutMillis, jg.RebalanceTimeoutMillis = 10000, 120000
	jg.ProtocolType = "consumer"
	jg.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}}
	c.send(jg, 1)
	waitGroupState(t, b, "parked", "PreparingRebalance") // the join is parked for 60 s
	// Shutdown answers it; a join still parked at the end of b.stop's 10 s
	// shutdown context would have its connection closed unanswered, and
	// recv fails.
	b.stop(t)
	if r := c.recv(jg, 1).(*kmsg.JoinGroupResponse); r.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("parked join at shutdown: %v", kerr.ErrorForCode(r.ErrorCode))
	}
}
