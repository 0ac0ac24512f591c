package group

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestTwoStepJoinSyncHeartbeat(t *testing.T) {
	h := newHarness(t, testConfig())
	id, j := h.joinNew("range")
	// The handed-out id is pending until it comes back; then the (initial,
	// zero-delay) join phase ends at once.
	res := j.get(t)
	if res.Err != nil || res.MemberID != id || res.Generation != 1 || res.Leader != id || *res.Protocol != "range" || *res.ProtocolType != ConsumerProtocolType {
		t.Fatalf("join: %+v", res)
	}
	if len(res.Members) != 1 || res.Members[0].MemberID != id || !bytes.Equal(res.Members[0].Metadata, subscription("t")) {
		t.Fatalf("leader's members: %+v", res.Members)
	}
	h.wantState(CompletingRebalance)
	// Heartbeats are fine right after JoinGroup.
	if err := h.heartbeat(id, 1); err != nil {
		t.Fatal(err)
	}
	s := h.sync(SyncRequest{Group: "g", MemberID: id, Generation: 1, Assignments: map[string][]byte{id: []byte("a")}}).get(t)
	if s.Err != nil || string(s.Assignment) != "a" || *s.Protocol != "range" {
		t.Fatalf("sync: %+v", s)
	}
	h.wantState(Stable)
	if err := h.heartbeat(id, 1); err != nil {
		t.Fatal(err)
	}
	// A repeated SyncGroup in Stable returns the assignment again.
	if s := h.sync(SyncRequest{Group: "g", MemberID: id, Generation: 1}).get(t); string(s.Assignment) != "a" {
		t.Fatalf("second sync: %+v", s)
	}
}

func TestJoinWithoutTwoStep(t *testing.T) {
	h := newHarness(t, testConfig())
	r := h.join(joinReq("")).get(t) // v0-3: no MEMBER_ID_REQUIRED
	if r.Err != nil || r.MemberID == "" || r.Generation != 1 || r.Leader != r.MemberID {
		t.Fatalf("join: %+v", r)
	}
}

func TestJoinValidation(t *testing.T) {
	h := newHarness(t, testConfig())
	req := joinReq("")
	req.Group = ""
	if r := h.join(req).get(t); r.Err != ErrInvalidGroupID {
		t.Fatalf("empty group: %v", r.Err)
	}
	req = joinReq("")
	req.SessionTimeout = time.Second
	if r := h.join(req).get(t); r.Err != ErrInvalidSessionTimeout {
		t.Fatalf("short session: %v", r.Err)
	}
	req = joinReq("")
	req.SessionTimeout = time.Hour
	if r := h.join(req).get(t); r.Err != ErrInvalidSessionTimeout {
		t.Fatalf("long session: %v", r.Err)
	}
	if r := h.join(joinReq("nobody")).get(t); r.Err != ErrUnknownMemberID {
		t.Fatalf("unknown member of unknown group: %v", r.Err)
	}
	req = joinReq("")
	req.Protocols = nil
	if r := h.join(req).get(t); r.Err != ErrInconsistentGroupProtocol {
		t.Fatalf("no protocols: %v", r.Err)
	}
	// Failed joins leave no group behind.
	if len(h.c.groups) != 0 {
		t.Fatalf("groups after failed joins: %v", sortedKeys(h.c.groups))
	}
}

func TestRebalanceWhenMemberJoins(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := h.stableGroup(1)
	a := ids[0]
	b, jb := h.joinNew()
	h.wantState(PreparingRebalance)
	if jb.done {
		t.Fatal("new member answered before the old one rejoined")
	}
	// A learns about the rebalance from its heartbeat, and may still commit.
	if err := h.heartbeat(a, gen); err != ErrRebalanceInProgress {
		t.Fatalf("heartbeat: %v", err)
	}
	if errs := h.commit(CommitRequest{Group: "g", Generation: gen, MemberID: a, Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 0}, Offset: 5}}}); errs[0] != nil {
		t.Fatalf("commit while preparing: %v", errs[0])
	}
	// Sync of the old generation is refused.
	if s := h.sync(SyncRequest{Group: "g", MemberID: a, Generation: gen}).get(t); s.Err != ErrRebalanceInProgress {
		t.Fatalf("sync while preparing: %v", s.Err)
	}
	ja := h.join(joinReq(a))
	ra, rb := ja.get(t), jb.get(t)
	if ra.Generation != gen+1 || rb.Generation != gen+1 || ra.Leader != a || rb.Leader != a {
		t.Fatalf("join results %+v %+v", ra, rb)
	}
	if len(ra.Members) != 2 || len(rb.Members) != 0 {
		t.Fatalf("member lists: leader %d, follower %d", len(ra.Members), len(rb.Members))
	}
	// A commit with the new generation before the sync is a rebalance in
	// progress; with the old generation an illegal generation.
	if errs := h.commit(CommitRequest{Group: "g", Generation: gen + 1, MemberID: b, Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 0}, Offset: 6}}}); errs[0] != ErrRebalanceInProgress {
		t.Fatalf("commit before sync: %v", errs[0])
	}
	if errs := h.commit(CommitRequest{Group: "g", Generation: gen, MemberID: b, Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 0}, Offset: 6}}}); errs[0] != ErrIllegalGeneration {
		t.Fatalf("commit with old generation: %v", errs[0])
	}
	sb := h.sync(SyncRequest{Group: "g", MemberID: b, Generation: gen + 1})
	if sb.done {
		t.Fatal("follower answered before the leader's assignment")
	}
	sa := h.sync(SyncRequest{Group: "g", MemberID: a, Generation: gen + 1, Assignments: map[string][]byte{a: []byte("A"), b: []byte("B")}})
	if string(sa.get(t).Assignment) != "A" || string(sb.get(t).Assignment) != "B" {
		t.Fatalf("assignments %q %q", sa.res.Assignment, sb.res.Assignment)
	}
	h.wantState(Stable)
}

func TestGenerationAndMemberErrors(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := h.stableGroup(2)
	for _, c := range []struct {
		member string
		gen    int32
		want   error
	}{
		{ids[0], gen + 1, ErrIllegalGeneration},
		{ids[0], gen - 1, ErrIllegalGeneration},
		{"stranger", gen, ErrUnknownMemberID},
		{ids[1], gen, nil},
	} {
		if err := h.heartbeat(c.member, c.gen); err != c.want {
			t.Errorf("heartbeat(%s, %d) = %v, want %v", c.member, c.gen, err, c.want)
		}
		if s := h.sync(SyncRequest{Group: "g", MemberID: c.member, Generation: c.gen}).get(t); s.Err != c.want {
			t.Errorf("sync(%s, %d) = %v, want %v", c.member, c.gen, s.Err, c.want)
		}
		errs := h.commit(CommitRequest{Group: "g", MemberID: c.member, Generation: c.gen, Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 1}, Offset: 1}}})
		if errs[0] != c.want {
			t.Errorf("commit(%s, %d) = %v, want %v", c.member, c.gen, errs[0], c.want)
		}
	}
	// Without a member, a non-empty group refuses commits.
	if errs := h.commit(CommitRequest{Group: "g", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 1}}}}); errs[0] != ErrUnknownMemberID {
		t.Fatalf("anonymous commit to a live group: %v", errs[0])
	}
	// Groups the coordinator does not know.
	if err := h.c.heartbeat(h.clk.Now(), HeartbeatRequest{Group: "other", MemberID: "x", Generation: 1}); err != ErrUnknownMemberID {
		t.Fatalf("heartbeat to unknown group: %v", err)
	}
	if errs := h.c.commit(h.clk.Now(), CommitRequest{Group: "other", Generation: 3, MemberID: "x", Offsets: []OffsetCommit{{}}}); errs[0] != ErrIllegalGeneration {
		t.Fatalf("commit to unknown group with a generation: %v", errs[0])
	}
	// Sync with the wrong protocol (v5).
	wrong := "roundrobin"
	if s := h.sync(SyncRequest{Group: "g", MemberID: ids[0], Generation: gen, Protocol: &wrong}).get(t); s.Err != ErrInconsistentGroupProtocol {
		t.Fatalf("sync with another protocol: %v", s.Err)
	}
}

func TestProtocolSelection(t *testing.T) {
	for _, c := range []struct {
		name    string
		members [][]string
		want    string
	}{
		{"only common protocol", [][]string{{"range", "roundrobin"}, {"roundrobin", "range"}, {"roundrobin"}}, "roundrobin"},
		{"majority preference", [][]string{{"range", "roundrobin"}, {"range", "roundrobin"}, {"roundrobin", "range"}}, "range"},
		{"tie to the first voter", [][]string{{"roundrobin", "range"}, {"range", "roundrobin"}}, "roundrobin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, testConfig())
			h.cfg.InitialRebalanceDelay = time.Second
			var joins []*joinCall
			for _, ps := range c.members {
				joins = append(joins, h.join(joinReq("", ps...)))
			}
			h.advance(time.Second) // members kept arriving: the delay is extended once
			h.advance(time.Second)
			for _, j := range joins {
				if r := j.get(t); r.Err != nil || *r.Protocol != c.want {
					t.Fatalf("join %+v, want protocol %s", r, c.want)
				}
			}
		})
	}
}

func TestInconsistentGroupProtocol(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, _ := h.stableGroup(1)
	if r := h.join(joinReq("", "cooperative-sticky")).get(t); r.Err != ErrInconsistentGroupProtocol || r.MemberID != "" {
		t.Fatalf("join without a common protocol: %+v", r)
	}
	req := joinReq("")
	req.ProtocolType = "connect"
	if r := h.join(req).get(t); r.Err != ErrInconsistentGroupProtocol {
		t.Fatalf("join with another protocol type: %+v", r)
	}
	// A current member that drops every protocol the group supports is
	// refused too (as in Kafka, even a sole member).
	if r := h.join(joinReq(ids[0], "sticky")).get(t); r.Err != ErrInconsistentGroupProtocol {
		t.Fatalf("member changing to an unsupported protocol: %+v", r)
	}
	// Adding a protocol while keeping a common one is a change that
	// rebalances (and the sole member's first choice wins).
	if r := h.join(joinReq(ids[0], "sticky", "range")).get(t); r.Err != nil || *r.Protocol != "sticky" {
		t.Fatalf("member adding a protocol: %+v", r)
	}
	h.wantState(CompletingRebalance)
}

func TestInitialRebalanceDelay(t *testing.T) {
	h := newHarness(t, testConfig())
	h.cfg.InitialRebalanceDelay = 3 * time.Second
	ja := h.join(joinReq(""))
	h.advance(2 * time.Second)
	jb := h.join(joinReq("")) // extends the delay by another 3s at the 3s mark
	h.advance(time.Second)
	if ja.done || jb.done {
		t.Fatal("join phase ended while members were still arriving")
	}
	h.wantState(PreparingRebalance)
	h.advance(2 * time.Second)
	if ja.done {
		t.Fatal("extended delay ended early")
	}
	h.advance(time.Second)
	ra, rb := ja.get(t), jb.get(t)
	if ra.Generation != 1 || rb.Generation != 1 {
		t.Fatalf("generations %d %d, want one generation for both", ra.Generation, rb.Generation)
	}
}

func TestRebalanceTimeoutDropsDynamicMembers(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := h.stableGroup(2)
	a, b := ids[0], ids[1]
	c, jc := h.joinNew()
	ja := h.join(joinReq(a))
	// B keeps heartbeating but never rejoins.
	for i := 0; i < 5; i++ {
		h.advance(5 * time.Second)
		if err := h.heartbeat(b, gen); err != ErrRebalanceInProgress {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	if ja.done {
		t.Fatal("join phase ended before the rebalance timeout")
	}
	h.advance(5 * time.Second) // 30s: the rebalance timeout
	ra, rc := ja.get(t), jc.get(t)
	if ra.Generation != gen+1 || rc.Generation != gen+1 || len(ra.Members) != 2 {
		t.Fatalf("after timeout: %+v %+v", ra, rc)
	}
	if h.group().byID[b] != nil {
		t.Fatal("member that did not rejoin is still in the group")
	}
	if err := h.heartbeat(b, gen); err != ErrUnknownMemberID {
		t.Fatalf("dropped member's heartbeat: %v", err)
	}
	_ = c
}

func TestSessionTimeout(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := h.stableGroup(2)
	a, b := ids[0], ids[1]
	for i := 0; i < 3; i++ {
		h.advance(4 * time.Second)
		if err := h.heartbeat(a, gen); err != nil && i < 2 {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
	}
	// 12s without B's heartbeat (session 10s): B is gone, A must rejoin.
	if h.group().byID[b] != nil {
		t.Fatal("member whose session ended is still in the group")
	}
	if err := h.heartbeat(a, gen); err != ErrRebalanceInProgress {
		t.Fatalf("heartbeat after expiry: %v", err)
	}
	r := h.join(joinReq(a)).get(t)
	if r.Generation != gen+1 || len(r.Members) != 1 {
		t.Fatalf("rejoin: %+v", r)
	}
	// A member waiting in JoinGroup or SyncGroup does not expire.
	s := h.sync(SyncRequest{Group: "g", MemberID: a, Generation: gen + 1})
	if s.done {
		// a is the leader; with no assignment it gets an empty one.
		if s.res.Err != nil {
			t.Fatal(s.res.Err)
		}
	}
	h.advance(time.Minute)
	if h.state() != Empty {
		t.Fatalf("state %s after the last member's session ended", h.state())
	}
	if g := h.group(); g.generation != gen+2 {
		t.Fatalf("generation %d, want %d (empty generation)", g.generation, gen+2)
	}
}

func TestParkedMembersDoNotExpire(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := h.stableGroup(2)
	a, b := ids[0], ids[1]
	// A new member starts a rebalance; B rejoins and waits; A (the leader)
	// only rejoins shortly before the rebalance timeout. B's session (10s)
	// must not end meanwhile.
	c, jc := h.joinNew()
	jb := h.join(joinReq(b))
	for i := 0; i < 5; i++ {
		h.advance(5 * time.Second)
		h.heartbeat(a, gen)
	}
	ja := h.join(joinReq(a))
	if ja.get(t).Generation != gen+1 || jb.get(t).Generation != gen+1 || jc.get(t).Generation != gen+1 {
		t.Fatalf("rejoin: %+v %+v", ja.res, jb.res)
	}
	// Now the follower waits in SyncGroup longer than its session.
	sb := h.sync(SyncRequest{Group: "g", MemberID: b, Generation: gen + 1})
	for i := 0; i < 4; i++ {
		h.advance(5 * time.Second)
		h.heartbeat(a, gen+1)
		h.heartbeat(c, gen+1)
	}
	if sb.done || h.group().byID[b] == nil {
		t.Fatalf("follower waiting in SyncGroup expired: %+v", sb.res)
	}
	h.sync(SyncRequest{Group: "g", MemberID: a, Generation: gen + 1, Assignments: map[string][]byte{b: []byte("B")}})
	if string(sb.get(t).Assignment) != "B" {
		t.Fatalf("assignment %q", sb.res.Assignment)
	}
}

func TestSyncTimeoutRemovesMembers(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := h.stableGroup(2)
	a, b := ids[0], ids[1]
	ja := h.join(joinReq(a)) // the leader rejoining starts a rebalance
	jb := h.join(joinReq(b))
	ja.get(t)
	jb.get(t)
	// The leader syncs and the group is stable; B never syncs.
	h.sync(SyncRequest{Group: "g", MemberID: a, Generation: gen + 1, Assignments: map[string][]byte{a: []byte("A"), b: []byte("B")}}).get(t)
	h.wantState(Stable)
	for i := 0; i < 6; i++ {
		h.advance(5 * time.Second)
		h.heartbeat(a, gen+1)
		h.heartbeat(b, gen+1)
	}
	if h.group().byID[b] != nil {
		t.Fatal("member that never sent SyncGroup is still in the group")
	}
	h.wantState(PreparingRebalance)
}

func TestLeaveGroup(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := h.stableGroup(2)
	a, b := ids[0], ids[1]
	if errs, gerr := h.leave(LeaveMember{MemberID: "stranger"}); gerr != nil || errs[0] != ErrUnknownMemberID {
		t.Fatalf("unknown member leaving: %v %v", gerr, errs)
	}
	if errs, _ := h.leave(LeaveMember{MemberID: a}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// The leader left: B leads the next generation alone.
	h.wantState(PreparingRebalance)
	r := h.join(joinReq(b)).get(t)
	if r.Generation != gen+1 || r.Leader != b {
		t.Fatalf("rejoin: %+v", r)
	}
	h.sync(SyncRequest{Group: "g", MemberID: b, Generation: gen + 1}).get(t)
	if errs, _ := h.leave(LeaveMember{MemberID: b}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// The last member left: the group is empty at the next generation and
	// that is written to the log.
	h.wantState(Empty)
	if g := h.group(); g.generation != gen+2 {
		t.Fatalf("generation %d", g.generation)
	}
	// A pending member (MEMBER_ID_REQUIRED) may leave too.
	req := joinReq("")
	req.RequireKnownMemberID = true
	p := h.join(req).get(t).MemberID
	if errs, _ := h.leave(LeaveMember{MemberID: p}); errs[0] != nil || h.group().isPending(p) {
		t.Fatalf("pending member leaving: %v", errs[0])
	}
	if _, gerr := h.c.leave(h.clk.Now(), "", nil); gerr != ErrInvalidGroupID {
		t.Fatalf("empty group id: %v", gerr)
	}
}

func TestPendingMemberExpires(t *testing.T) {
	h := newHarness(t, testConfig())
	req := joinReq("")
	req.RequireKnownMemberID = true
	id := h.join(req).get(t).MemberID
	h.advance(11 * time.Second) // session timeout 10s
	if h.group().isPending(id) {
		t.Fatal("pending member did not expire")
	}
	if r := h.join(joinReq(id)).get(t); r.Err != ErrUnknownMemberID {
		t.Fatalf("expired pending member joining: %+v", r)
	}
}

func TestPendingMemberHoldsJoinPhase(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := h.stableGroup(1)
	a := ids[0]
	ja := h.join(joinReq(a)) // the leader rejoining starts a rebalance...
	// ...which completes at once for a sole member.
	if ja.get(t).Generation != gen+1 {
		t.Fatalf("%+v", ja.res)
	}
	h.sync(SyncRequest{Group: "g", MemberID: a, Generation: gen + 1}).get(t)
	// Now a new member's first step and a rebalance: the phase waits for
	// the handed-out id.
	req := joinReq("")
	req.RequireKnownMemberID = true
	pid := h.join(req).get(t).MemberID
	ja = h.join(joinReq(a))
	if ja.done {
		t.Fatal("join phase ended with a member id still pending")
	}
	req.MemberID = pid
	jp := h.join(req)
	if ja.get(t).Generation != gen+2 || jp.get(t).Generation != gen+2 {
		t.Fatalf("%+v %+v", ja.res, jp.res)
	}
}

func TestDuplicateJoinAndSyncAreAnswered(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := h.stableGroup(3)
	a, b, c := ids[0], ids[1], ids[2]
	ja := h.join(joinReq(a)) // starts a rebalance
	first := h.join(joinReq(b))
	second := h.join(joinReq(b))
	if first.get(t).Err != ErrRebalanceInProgress {
		t.Fatalf("replaced JoinGroup: %+v", first.res)
	}
	h.join(joinReq(c)).get(t)
	ja.get(t)
	second.get(t)
	s1 := h.sync(SyncRequest{Group: "g", MemberID: b, Generation: gen + 1})
	s2 := h.sync(SyncRequest{Group: "g", MemberID: b, Generation: gen + 1})
	if s1.get(t).Err != ErrRebalanceInProgress || s2.done {
		t.Fatalf("replaced SyncGroup: %+v %+v", s1.res, s2.res)
	}
	h.sync(SyncRequest{Group: "g", MemberID: a, Generation: gen + 1}).get(t)
	s2.get(t)
}

func TestGroupMaxSize(t *testing.T) {
	h := newHarness(t, testConfig())
	h.cfg.MaxSize = 2
	h.stableGroup(2)
	req := joinReq("")
	req.RequireKnownMemberID = true
	if r := h.join(req).get(t); r.Err != ErrGroupMaxSizeReached {
		t.Fatalf("third member: %+v", r)
	}
}

func TestStaticMembership(t *testing.T) {
	h := newHarness(t, testConfig())
	static := func(member, instance string) JoinRequest {
		r := joinReq(member)
		r.InstanceID = &instance
		return r
	}
	ja := h.join(static("", "ia")).get(t)
	a := ja.MemberID
	h.sync(SyncRequest{Group: "g", MemberID: a, Generation: ja.Generation, Assignments: map[string][]byte{a: []byte("A")}}).get(t)
	jb := h.join(static("", "ib"))
	h.join(static(a, "ia")).get(t)
	b := jb.get(t).MemberID
	gen := jb.res.Generation
	sb := h.sync(SyncRequest{Group: "g", MemberID: b, Generation: gen, InstanceID: strp("ib")})
	h.sync(SyncRequest{Group: "g", MemberID: a, Generation: gen, InstanceID: strp("ia"), Assignments: map[string][]byte{a: []byte("A"), b: []byte("B")}}).get(t)
	sb.get(t)
	h.wantState(Stable)

	// B restarts: same instance, no member id. It takes over its slot
	// without a rebalance and keeps its assignment.
	rb := h.join(static("", "ib")).get(t)
	if rb.Err != nil || rb.MemberID == b || rb.Generation != gen || rb.Leader != a {
		t.Fatalf("static rejoin: %+v", rb)
	}
	h.wantState(Stable)
	if s := h.sync(SyncRequest{Group: "g", MemberID: rb.MemberID, InstanceID: strp("ib"), Generation: gen}).get(t); string(s.Assignment) != "B" {
		t.Fatalf("static member's assignment after restart: %+v", s)
	}
	// The old instance is fenced.
	if err := h.c.heartbeat(h.clk.Now(), HeartbeatRequest{Group: "g", MemberID: b, InstanceID: strp("ib"), Generation: gen}); err != ErrFencedInstanceID {
		t.Fatalf("stale instance heartbeat: %v", err)
	}
	b = rb.MemberID

	// The leader restarts too (v9): it is told it leads, without
	// reassigning.
	req := static("", "ia")
	req.SupportsSkipAssignment = true
	ra := h.join(req).get(t)
	if ra.Leader != ra.MemberID || !ra.SkipAssignment || len(ra.Members) != 2 || ra.Generation != gen {
		t.Fatalf("static leader rejoin (v9): %+v", ra)
	}
	a = ra.MemberID

	// A static member that misses a join phase stays in the group.
	jc := h.join(joinReq(""))
	h.join(static(a, "ia"))
	for i := 0; i < 6; i++ { // B heartbeats but does not rejoin
		h.advance(5 * time.Second)
		h.heartbeat(b, gen)
	}
	if jc.get(t).Err != nil || h.group().byID[b] == nil {
		t.Fatalf("static member dropped at the rebalance timeout: %+v", jc.res)
	}
	// Removal by instance id alone.
	if errs, _ := h.leave(LeaveMember{InstanceID: strp("ib")}); errs[0] != nil || h.group().byID[b] != nil {
		t.Fatalf("leave by instance id: %v", errs[0])
	}
	if errs, _ := h.leave(LeaveMember{InstanceID: strp("nobody")}); errs[0] != ErrUnknownMemberID {
		t.Fatalf("leave by unknown instance id: %v", errs[0])
	}
}

func strp(s string) *string { return &s }

func TestCommitFetchDelete(t *testing.T) {
	h := newHarness(t, testConfig())
	tp := func(p int32) TopicPartition { return TopicPartition{"t", p} }
	// A group that only stores offsets (generation -1, no member).
	errs := h.commit(CommitRequest{Group: "simple", Generation: -1, Offsets: []OffsetCommit{
		{TopicPartition: tp(0), Offset: 10, LeaderEpoch: 3, Metadata: "m"},
		{TopicPartition: tp(1), Offset: 20, LeaderEpoch: -1, Metadata: string(make([]byte, 5000))},
	}})
	if errs[0] != nil || errs[1] != ErrOffsetMetadataTooLarge {
		t.Fatalf("commit errors %v", errs)
	}
	got := h.c.fetchOffsets("simple", []TopicPartition{tp(0), tp(1)})
	if got[0].Offset != 10 || got[0].LeaderEpoch != 3 || got[0].Metadata != "m" || got[1].Offset != -1 {
		t.Fatalf("fetch %+v", got)
	}
	if all := h.c.fetchOffsets("simple", nil); len(all) != 1 {
		t.Fatalf("fetch all %+v", all)
	}
	if none := h.c.fetchOffsets("nobody", []TopicPartition{tp(0)}); none[0].Offset != -1 {
		t.Fatalf("unknown group %+v", none)
	}

	// Delete offsets and groups.
	ids, gen := h.stableGroup(1)
	h.commit(CommitRequest{Group: "g", Generation: gen, MemberID: ids[0], Offsets: []OffsetCommit{{TopicPartition: tp(0), Offset: 1}, {TopicPartition: TopicPartition{"other", 0}, Offset: 2}}})
	derrs, gerr := h.c.deleteOffsets(h.clk.Now(), "g", []TopicPartition{tp(0), {"other", 0}})
	if gerr != nil || derrs[0] != ErrGroupSubscribedToTopic || derrs[1] != nil {
		t.Fatalf("delete offsets of a live consumer group: %v %v", gerr, derrs)
	}
	if got := h.c.fetchOffsets("g", nil); len(got) != 1 || got[0].Topic != "t" {
		t.Fatalf("after offset delete: %+v", got)
	}
	if _, gerr := h.c.deleteOffsets(h.clk.Now(), "nobody", nil); gerr != ErrGroupIDNotFound {
		t.Fatal(gerr)
	}
	derrs = h.c.deleteGroups(h.clk.Now(), []string{"g", "simple", "nobody"})
	if derrs[0] != ErrNonEmptyGroup || derrs[1] != nil || derrs[2] != ErrGroupIDNotFound {
		t.Fatalf("delete groups: %v", derrs)
	}
	if h.c.groups["simple"] != nil || len(h.c.fetchOffsets("simple", nil)) != 0 {
		t.Fatal("deleted group still there")
	}
	// The deletion survives a restart (tombstones).
	h.restart()
	if h.c.groups["simple"] != nil {
		t.Fatal("deleted group came back after replay")
	}
	if got := h.c.fetchOffsets("g", nil); len(got) != 1 || got[0].Offset != 1 {
		t.Fatalf("offsets after replay: %+v", got)
	}
}

func TestReplayRestoresGroups(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := h.stableGroup(3)
	h.commit(CommitRequest{Group: "g", Generation: gen, MemberID: ids[1], Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 2}, Offset: 42, LeaderEpoch: 0, Metadata: "x"}}})
	h.commit(CommitRequest{Group: "g", Generation: gen, MemberID: ids[1], Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 2}, Offset: 43, LeaderEpoch: 0}}})
	leader := h.group().leader

	h.restart()
	h.wantState(Stable)
	g := h.group()
	if g.generation != gen || g.leader != leader || len(g.members) != 3 || g.protocol != "range" {
		t.Fatalf("restored group: gen %d leader %s members %d protocol %s", g.generation, g.leader, len(g.members), g.protocol)
	}
	// Members carry on with their generation and get their assignment.
	for _, id := range ids {
		if err := h.heartbeat(id, gen); err != nil {
			t.Fatalf("heartbeat after restart: %v", err)
		}
		if s := h.sync(SyncRequest{Group: "g", MemberID: id, Generation: gen}).get(t); string(s.Assignment) != "assigned-"+id {
			t.Fatalf("assignment after restart: %q", s.Assignment)
		}
	}
	if o := h.c.fetchOffsets("g", []TopicPartition{{"t", 2}}); o[0].Offset != 43 {
		t.Fatalf("offset after restart: %+v", o)
	}
	// Members that do not come back expire and the group empties.
	h.advance(11 * time.Second)
	h.wantState(Empty)
	h.restart()
	h.wantState(Empty)
	if h.group().generation != gen+1 {
		t.Fatalf("empty generation after restart: %d", h.group().generation)
	}
}

func TestOffsetsRetention(t *testing.T) {
	cfg := testConfig()
	cfg.OffsetsRetention = time.Hour
	cfg.OffsetsRetentionCheckInterval = time.Minute
	h := newHarness(t, cfg)
	h.commit(CommitRequest{Group: "simple", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 0}, Offset: 1}}})
	ids, gen := h.stableGroup(1)
	h.commit(CommitRequest{Group: "g", Generation: gen, MemberID: ids[0], Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 0}, Offset: 7}}})
	h.advance(30 * time.Minute)
	h.leave(LeaveMember{MemberID: ids[0]}) // empty from now on
	h.wantState(Empty)
	h.advance(31 * time.Minute) // simple's offset is 61 minutes old
	if h.c.groups["simple"] != nil {
		t.Fatal("offsets-only group outlived its retention")
	}
	if h.group() == nil || h.group().offsets[TopicPartition{"t", 0}] == nil {
		t.Fatal("empty group's offset expired before the group was empty for the retention")
	}
	h.advance(30 * time.Minute)
	if h.group() != nil {
		t.Fatal("empty group outlived its offsets' retention")
	}
	h.restart()
	if len(h.c.groups) != 0 {
		t.Fatalf("expired groups came back after replay: %v", sortedKeys(h.c.groups))
	}
}

func TestStoreFailure(t *testing.T) {
	h := newHarness(t, testConfig())
	h.store.failErr = errors.New("disk on fire")
	errs := h.c.commit(h.clk.Now(), CommitRequest{Group: "s", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 0}, Offset: 1}}})
	if !errors.Is(errs[0], ErrCoordinatorNotAvailable) {
		t.Fatalf("commit with a failing store: %v", errs[0])
	}
	if o := h.c.fetchOffsets("s", []TopicPartition{{"t", 0}}); o[0].Offset != -1 || h.c.groups["s"] != nil {
		t.Fatal("offset or group visible though nothing was written")
	}
	// A failed assignment write fails the generation; members rejoin.
	h.store.failErr = nil
	ids, gen := h.stableGroup(1)
	h.join(joinReq(ids[0])).get(t)
	h.store.failErr = errors.New("disk on fire")
	if s := h.sync(SyncRequest{Group: "g", MemberID: ids[0], Generation: gen + 1}).get(t); !errors.Is(s.Err, ErrCoordinatorNotAvailable) {
		t.Fatalf("sync with a failing store: %v", s.Err)
	}
	h.wantState(PreparingRebalance)
}

func TestUnloadAnswersParkedRequests(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, _ := h.stableGroup(2)
	ja := h.join(joinReq(ids[0])) // the leader starts a rebalance and waits for B
	h.c.unload(h.clk.Now(), ErrNotCoordinator)
	effects, _ := h.c.takeEffects()
	for _, e := range effects {
		e(nil)
	}
	if ja.get(t).Err != ErrNotCoordinator {
		t.Fatalf("parked join after unload: %+v", ja.res)
	}
}

func TestPartitionFor(t *testing.T) {
	for _, c := range []struct {
		group string
		n     int32
		want  int32
	}{
		{"hello", 50, 99162322 % 50},        // "hello".hashCode() = 99162322
		{"polygenelubricants", 50, 0},       // hashCode() = Integer.MIN_VALUE: abs → 0
		{"", 50, 0},                         // hashCode() = 0
		{"Aa", 7, 2112 % 7},                 // "Aa".hashCode() = 2112
		{"zzzzzzzzzz", 50, 1490303402 % 50}, // overflows int32: -> -1490303402? (checked below)
	} {
		if c.group == "zzzzzzzzzz" {
			// Compute Java's value independently with int64 arithmetic.
			var h int64
			for _, r := range c.group {
				h = (31*h + int64(r)) & 0xffffffff
			}
			v := int32(uint32(h))
			if v < 0 {
				v = -v
			}
			c.want = v % c.n
		}
		if got := PartitionFor(c.group, c.n); got != c.want {
			t.Errorf("PartitionFor(%q, %d) = %d, want %d", c.group, c.n, got, c.want)
		}
	}
}

// Deleting a topic removes every group's offsets of it (tombstones, so a
// restart agrees); a group that only stored offsets and has none left is
// removed, a live group stays.
func TestTopicsDeletedRemovesOffsets(t *testing.T) {
	h := newHarness(t, testConfig())
	gone, kept := TopicPartition{"gone", 0}, TopicPartition{"kept", 0}
	if errs := h.commit(CommitRequest{Group: "simple", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: gone, Offset: 20}, {TopicPartition: TopicPartition{"gone", 1}, Offset: 3}}}); errs[0] != nil {
		t.Fatal(errs)
	}
	if errs := h.commit(CommitRequest{Group: "mixed", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: gone, Offset: 5}, {TopicPartition: kept, Offset: 6}}}); errs[0] != nil {
		t.Fatal(errs)
	}
	ids, gen := h.stableGroup(1)
	h.commit(CommitRequest{Group: "g", Generation: gen, MemberID: ids[0], Offsets: []OffsetCommit{{TopicPartition: gone, Offset: 9}}})

	var n int
	var err error
	h.do(func(now time.Time) { n, err = h.c.topicsDeleted(now, map[string]bool{"gone": true}) })
	if err != nil || n != 4 {
		t.Fatalf("removed %d offsets, %v; want 4", n, err)
	}
	check := func() {
		t.Helper()
		if h.c.groups["simple"] != nil {
			t.Fatal("offsets-only group without offsets not removed")
		}
		if got := h.c.fetchOffsets("mixed", nil); len(got) != 1 || got[0].TopicPartition != kept || got[0].Offset != 6 {
			t.Fatalf("mixed: %+v", got)
		}
		if h.c.groups["g"] == nil || len(h.c.fetchOffsets("g", nil)) != 0 {
			t.Fatalf("live group g: %v %+v", h.c.groups["g"] != nil, h.c.fetchOffsets("g", nil))
		}
	}
	check()
	h.restart()
	check()
}
