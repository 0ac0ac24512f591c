package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/server/metastore"
)

// adoptUnknownLogs records, in a metadata store this start created, a
// topic for every topic whose partition logs were found: how a Kafka
// broker's log directory (or one whose metadata files were lost) is taken
// over. With a store that existed, such logs are strays instead
// (setAsideStrayLogs).
func (s *Server) adoptUnknownLogs() {
	count := map[string]int32{}
	for _, l := range s.mgr.Logs() {
		tp := l.TopicPartition()
		count[tp.Topic] = max(count[tp.Topic], tp.Partition+1)
	}
	for name, n := range count {
		s.logger.Warn("new metadata store: adopting the partition logs found as a topic", "topic", name, "partitions", n)
		if err := s.meta.CreateTopic(metastore.Topic{Name: name, ID: metastore.NewTopicID(), Partitions: n, ReplicationFactor: 1}); err != nil {
			s.logger.Error("adopting partition logs failed; they are not served", "topic", name, "err", err)
		}
	}
}

// setAsideStrayLogs handles, before the engine loads the log dirs,
// partition directories the metadata store does not list: of a topic it
// does not know, or beyond a known topic's partition count. They are what
// a topic creation (or CreatePartitions) that did not reach the store left
// behind, and are never adopted as topics. A stray that holds no records
// is removed; one with records is renamed to <topic>-<partition>.<id>-stray
// and left for the operator, as Kafka does with stray logs. Both are
// logged at WARN (the removals as one count per log dir).
func (s *Server) setAsideStrayLogs() {
	known := map[string]int32{}
	for _, ts := range [][]metastore.Topic{s.meta.Topics(), s.meta.PendingDeletions()} {
		for _, t := range ts {
			known[t.Name] = max(known[t.Name], t.Partitions)
		}
	}
	for _, dir := range s.cfg.LogDirs {
		ents, err := s.fs.ReadDir(dir)
		if err != nil {
			continue // a new dir: the engine creates it
		}
		removed, aside := 0, 0
		for _, e := range ents {
			tp, ok := engine.ParsePartitionDirName(e.Name())
			if !e.IsDir() || !ok {
				continue
			}
			if n, ok := known[tp.Topic]; ok && tp.Partition < n {
				continue
			}
			path := filepath.Join(dir, e.Name())
			if holdsRecords, err := s.holdsRecords(path); err == nil && !holdsRecords {
				if err := s.fs.RemoveAll(path); err == nil {
					removed++
					continue
				}
			}
			to := filepath.Join(dir, strayDirName(e.Name()))
			if err := s.fs.Rename(path, to); err != nil {
				s.logger.Error("setting aside a partition log the metadata does not list failed", "dir", path, "err", err)
				continue
			}
			s.logger.Warn("partition log the metadata does not list set aside (not served)", "dir", path, "now", to)
			aside++
		}
		if removed > 0 {
			s.logger.Warn("removed empty partition logs the metadata does not list (a topic creation that did not finish)", "dir", dir, "count", removed)
		}
		if removed+aside > 0 {
			if err := s.fs.SyncDir(dir); err != nil {
				s.logger.Warn("syncing a log dir failed", "dir", dir, "err", err)
			}
		}
	}
}

// holdsRecords reports whether a partition directory has a non-empty
// segment (or cleaner output) file.
func (s *Server) holdsRecords(dir string) (bool, error) {
	ents, err := s.fs.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if e.IsDir() || !strings.Contains(e.Name(), engine.LogSuffix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return false, err
		}
		if fi.Size() > 0 {
			return true, nil
		}
	}
	return false, nil
}

// strayDirName is Kafka's name for a stray log: the partition directory's
// name, a random id and "-stray", shortened to fit a file name.
func strayDirName(name string) string {
	var id [16]byte
	rand.Read(id[:])
	suffix := "." + hex.EncodeToString(id[:]) + strayDirSuffix
	return name[:min(len(name), 255-len(suffix))] + suffix
}

// strayDirSuffix marks a partition directory set aside (never loaded).
const strayDirSuffix = "-stray"

func (s *Server) deleteLogs(name string, partitions int32) error {
	var errs []error
	failed := s.mgr.Failed() // logs that did not open at start-up: their directories go too
	for p := int32(0); p < partitions; p++ {
		tp := engine.TopicPartition{Topic: name, Partition: p}
		if _, ok := s.mgr.Log(tp); !ok && failed[tp] == nil {
			continue
		}
		if err := s.deleteLog(tp); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
