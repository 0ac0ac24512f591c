package group

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// The record layouts are Kafka's; these bytes are built by hand from
// OffsetCommitKey.json / OffsetCommitValue.json / GroupMetadataKey.json /
// GroupMetadataValue.json, independently of kmsg.
func TestRecordBytes(t *testing.T) {
	str := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		return append(b, s...)
	}
	var want []byte
	want = binary.BigEndian.AppendUint16(want, 1) // key version
	want = str(want, "grp")
	want = str(want, "topic")
	want = binary.BigEndian.AppendUint32(want, 7)
	if got := offsetKey("grp", TopicPartition{"topic", 7}); !bytes.Equal(got, want) {
		t.Fatalf("offset key\n got %x\nwant %x", got, want)
	}

	commit := time.UnixMilli(1700000000123)
	want = binary.BigEndian.AppendUint16(nil, 3)
	want = binary.BigEndian.AppendUint64(want, 42)
	want = binary.BigEndian.AppendUint32(want, 5)
	want = str(want, "meta")
	want = binary.BigEndian.AppendUint64(want, uint64(commit.UnixMilli()))
	val := offsetValue(&offsetEntry{offset: 42, leaderEpoch: 5, metadata: "meta", commitTime: commit})
	if !bytes.Equal(val, want) {
		t.Fatalf("offset value\n got %x\nwant %x", val, want)
	}
	e, err := decodeOffsetValue(val)
	if err != nil || e.offset != 42 || e.leaderEpoch != 5 || e.metadata != "meta" || !e.commitTime.Equal(commit) {
		t.Fatalf("decoded %+v %v", e, err)
	}

	want = binary.BigEndian.AppendUint16(nil, 2)
	want = str(want, "grp")
	if got := groupKey("grp"); !bytes.Equal(got, want) {
		t.Fatalf("group key\n got %x\nwant %x", got, want)
	}

	g := newGroup("grp", commit)
	g.protocolType, g.protocol, g.generation = "consumer", "range", 9
	m := &member{id: "m-1", protocolType: "consumer", clientID: "c", clientHost: "/h", protocols: []Protocol{{"range", []byte{1, 2}}},
		sessionTimeout: 10 * time.Second, rebalanceTimeout: time.Minute, assignment: []byte{3}}
	g.add(m)
	want = binary.BigEndian.AppendUint16(nil, 3)
	want = str(want, "consumer")
	want = binary.BigEndian.AppendUint32(want, 9)
	want = str(want, "range")
	want = str(want, "m-1") // leader
	want = binary.BigEndian.AppendUint64(want, uint64(commit.UnixMilli()))
	want = binary.BigEndian.AppendUint32(want, 1) // members
	want = str(want, "m-1")
	want = binary.BigEndian.AppendUint16(want, 0xffff) // null instance id
	want = str(want, "c")
	want = str(want, "/h")
	want = binary.BigEndian.AppendUint32(want, 60000) // rebalance timeout
	want = binary.BigEndian.AppendUint32(want, 10000) // session timeout
	want = append(binary.BigEndian.AppendUint32(want, 2), 1, 2)
	want = append(binary.BigEndian.AppendUint32(want, 1), 3)
	gv := groupValue(g, func(m *member) []byte { return m.assignment })
	if !bytes.Equal(gv, want) {
		t.Fatalf("group value\n got %x\nwant %x", gv, want)
	}

	kind, grp, tp, err := decodeKey(offsetKey("grp", TopicPartition{"topic", 7}))
	if kind != kindOffset || grp != "grp" || tp != (TopicPartition{"topic", 7}) || err != nil {
		t.Fatal(kind, grp, tp, err)
	}
	if kind, grp, _, err := decodeKey(groupKey("grp")); kind != kindGroup || grp != "grp" || err != nil {
		t.Fatal(kind, grp, err)
	}
	if kind, _, _, err := decodeKey([]byte{0, 3, 0, 0}); kind != kindUnknown || err != nil {
		t.Fatal("future key versions must be skipped without error", kind, err)
	}
	if _, _, _, err := decodeKey([]byte{0, 1, 0}); err == nil {
		t.Fatal("truncated key decoded")
	}
}

// A replay skips what it cannot read instead of failing.
func TestLoaderSkipsGarbage(t *testing.T) {
	l := newLoader()
	l.add(Record{Key: []byte{0xff}})
	l.add(Record{Key: offsetKey("g", TopicPartition{"t", 0}), Value: []byte{0, 3, 1}})
	l.add(Record{Key: groupKey("g"), Value: []byte{0, 3}})
	l.add(Record{Key: offsetKey("g", TopicPartition{"t", 1}), Value: offsetValue(&offsetEntry{offset: 5, commitTime: t0})})
	if l.skipped != 3 {
		t.Fatalf("skipped %d, want 3", l.skipped)
	}
	cfg := testConfig()
	c := newCore(&cfg, 0, testLogger(), nil, nil)
	l.install(c, t0)
	if o := c.fetchOffsets("g", []TopicPartition{{"t", 1}}); o[0].Offset != 5 {
		t.Fatalf("%+v", o)
	}
}

func FuzzLoader(f *testing.F) {
	f.Add(offsetKey("g", TopicPartition{"t", 0}), offsetValue(&offsetEntry{offset: 1, commitTime: t0}))
	g := newGroup("g", t0)
	g.add(&member{id: "m", protocols: []Protocol{{"range", nil}}})
	g.protocol = "range"
	f.Add(groupKey("g"), groupValue(g, func(*member) []byte { return nil }))
	// Invariants: never panics; whatever loads can be installed and
	// described.
	f.Fuzz(func(t *testing.T, key, value []byte) {
		l := newLoader()
		l.add(Record{Key: key, Value: value})
		cfg := testConfig()
		c := newCore(&cfg, 0, testLogger(), nil, nil)
		l.install(c, t0)
		for id := range c.groups {
			c.describe(id)
			c.fetchOffsets(id, nil)
		}
	})
}
