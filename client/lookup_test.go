package client

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kvlog/kvlog/client/clienttest"
	"github.com/kvlog/kvlog/internal/testbroker"
)

// TestLookup reads keys through the broker's key index: read-your-writes
// with the Position a Put returned, deletes, binary keys, LookupMany, and
// the errors of a missing topic and a missing HTTP address.
func TestLookup(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, time.Minute)
	w, err := NewWriter(ctx, b.Brokers(), "profiles", WithCreateTopic(TopicSpec{Partitions: 3}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	opts := LookupOptions{HTTP: b.HTTP}
	for i, v := range []string{"v1", "v2"} {
		pos, err := w.Put(ctx, []byte("alice"), []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		o := opts
		o.AtOffset, o.MinOffset = true, pos.Offset
		res, err := Lookup(ctx, "profiles", []byte("alice"), o)
		if err != nil || !res.Found || string(res.Value) != v || res.Offset != pos.Offset || res.Partition != pos.Partition || res.Partition != PartitionFor([]byte("alice"), 3) {
			t.Fatalf("lookup %d: %+v, %v (put at %+v)", i, res, err, pos)
		}
	}
	bin := []byte{0, 1, 0xfe, '/'}
	if _, err := w.Put(ctx, bin, []byte("b")); err != nil {
		t.Fatal(err)
	}
	pos, err := w.Delete(ctx, []byte("bob"))
	if err != nil {
		t.Fatal(err)
	}
	o := opts
	o.AtOffset, o.MinOffset = true, pos.Offset
	if res, err := Lookup(ctx, "profiles", []byte("bob"), o); err != nil || res.Found {
		t.Fatalf("deleted key: %+v, %v", res, err)
	}
	res, errs, err := LookupMany(ctx, "profiles", [][]byte{[]byte("alice"), bin, []byte("nobody")}, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range errs {
		if e != nil {
			t.Fatalf("LookupMany key %d: %v", i, e)
		}
	}
	if !res[0].Found || string(res[0].Value) != "v2" || !res[1].Found || string(res[1].Value) != "b" || res[2].Found {
		t.Fatalf("LookupMany: %+v", res)
	}
	if _, err := Lookup(ctx, "nope", []byte("k"), opts); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("missing topic: %v", err)
	}
	if _, err := Lookup(ctx, "profiles", []byte("k"), LookupOptions{}); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("no HTTP address: %v", err)
	}
	if _, err := Lookup(ctx, "profiles", nil, opts); !errors.Is(err, ErrNilKey) {
		t.Fatalf("nil key: %v", err)
	}
}

// TestRemoteTable: writes and reads with no replay, reading one's own
// writes with GetAfter.
func TestRemoteTable(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, time.Minute)
	tbl, err := OpenRemote(ctx, b.Brokers(), "remote", LookupOptions{HTTP: b.HTTP}, WithCreateTopic(TopicSpec{Partitions: 2}))
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	for i := 0; i < 5; i++ {
		key := []byte(fmt.Sprintf("k%d", i))
		pos, err := tbl.Put(ctx, key, []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if v, ok, err := tbl.GetAfter(ctx, key, pos); err != nil || !ok || string(v) != fmt.Sprint(i) {
			t.Fatalf("GetAfter %s: %q %v %v", key, v, ok, err)
		}
	}
	pos, err := tbl.Delete(ctx, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := tbl.GetAfter(ctx, []byte("k1"), pos); err != nil || ok {
		t.Fatalf("deleted key: %v %v", ok, err)
	}
	if v, ok, err := tbl.Get(ctx, []byte("k3")); err != nil || !ok || string(v) != "3" {
		t.Fatalf("Get k3: %q %v %v", v, ok, err)
	}
	if _, err := OpenRemote(ctx, b.Brokers(), "remote", LookupOptions{}); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("no HTTP address: %v", err)
	}
}
