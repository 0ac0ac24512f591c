package metastore

import (
	"errors"
	"testing"
)

func TestLocalPersists(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenLocal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	cid := s.ClusterID()
	if len(cid) != 22 {
		t.Fatalf("cluster id %q", cid)
	}
	id := NewTopicID()
	if err := s.CreateTopic(Topic{Name: "a", ID: id, Partitions: 3, ReplicationFactor: 1, Configs: map[string]string{"cleanup.policy": "compact"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTopic(Topic{Name: "a"}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if err := s.CreateTopic(Topic{Name: "b", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTopic("b"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTopic(Topic{Name: "b", Partitions: 1}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("create while pending deletion: %v", err)
	}
	if err := s.SetBrokerConfigs("", map[string]string{"log.cleaner.threads": "2"}); err != nil {
		t.Fatal(err)
	}
	var pids []int64
	for i := 0; i < 3; i++ {
		pid, err := s.NextProducerID()
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if pids[0] != 0 || pids[2] != 2 {
		t.Fatalf("pids %v", pids)
	}
	s.Close()

	s, err = OpenLocal(dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ClusterID() != cid {
		t.Fatalf("cluster id changed: %q", s.ClusterID())
	}
	ts := s.Topics()
	if len(ts) != 1 || ts[0].Name != "a" || ts[0].ID != id || ts[0].Partitions != 3 || ts[0].Configs["cleanup.policy"] != "compact" {
		t.Fatalf("topics %+v", ts)
	}
	if p := s.PendingDeletions(); len(p) != 1 || p[0].Name != "b" {
		t.Fatalf("pending %+v", p)
	}
	if err := s.DeletionDone("b"); err != nil {
		t.Fatal(err)
	}
	if s.BrokerConfigs("")["log.cleaner.threads"] != "2" {
		t.Fatal("broker configs lost")
	}
	pid, err := s.NextProducerID()
	if err != nil {
		t.Fatal(err)
	}
	if pid < producerIDBlock {
		t.Fatalf("producer id %d reused after restart", pid)
	}
	if err := s.SetTopicConfigs("nope", nil); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
}

func TestLocalSetPartitionCount(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenLocal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTopic(Topic{Name: "a", ID: NewTopicID(), Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPartitionCount("a", 5); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPartitionCount("a", 5); err != nil {
		t.Fatalf("same count again: %v", err)
	}
	if err := s.SetPartitionCount("a", 4); !errors.Is(err, ErrPartitionCount) {
		t.Fatalf("decrease: %v", err)
	}
	if err := s.SetPartitionCount("nope", 4); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
	s.Close()
	s, err = OpenLocal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ts := s.Topics(); len(ts) != 1 || ts[0].Partitions != 5 {
		t.Fatalf("after reopen: %+v", ts)
	}
}

// TestLocalScramCredentials: credentials are kept per user and mechanism,
// survive a reopen, and removing them all forgets the user.
func TestLocalScramCredentials(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLocal(dir, "c")
	if err != nil {
		t.Fatal(err)
	}
	creds := map[string]string{"SCRAM-SHA-256": "salt=YQ==,stored_key=Yg==,server_key=Yw==,iterations=4096"}
	if err := l.SetScramCredentials("bob", creds); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l, err = OpenLocal(dir, "c")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if v, ok, _ := l.ScramCredential("bob", "SCRAM-SHA-256"); !ok || v != creds["SCRAM-SHA-256"] {
		t.Fatalf("after reopen: %q %v", v, ok)
	}
	if users, _ := l.ScramUsers(); len(users) != 1 || users[0] != "bob" {
		t.Fatalf("users %v", users)
	}
	if err := l.SetScramCredentials("bob", nil); err != nil {
		t.Fatal(err)
	}
	if users, _ := l.ScramUsers(); len(users) != 0 {
		t.Fatalf("users after removal %v", users)
	}
	var _ ScramStore = l
}
