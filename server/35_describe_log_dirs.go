package server

import (
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// DescribeLogDirs: v0-5
//
// Every configured log dir (log.dirs), absolute, with the partitions it
// holds: size on disk (all segments) and offset lag max(HW - LEO, 0),
// which a single-node leader always reports as 0. A null Topics list means
// every partition; a named topic or partition this broker does not have is
// left out, as Kafka does. Nothing is ever a future replica
// (AlterReplicaLogDirs is not served) and no dir is offline or cordoned.
//
// Version notes:
//   - v1: same as v0 (throttle semantics).
//   - v2: flexible.
//   - v3: top-level ErrorCode.
//   - v4: TotalBytes and UsableBytes of the dir's volume (statfs; -1 when
//     it fails).
//   - v5: IsCordoned (KIP-1066), always false.
func init() { regKey(kmsg.DescribeLogDirs, 0, 5, (*Server).handleDescribeLogDirs) }

func (s *Server) handleDescribeLogDirs(r *request) {
	req := r.kreq.(*kmsg.DescribeLogDirsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)

	// want reports whether a partition is asked for.
	var asked map[string]map[int32]bool
	if req.Topics != nil {
		asked = map[string]map[int32]bool{}
		for _, rt := range req.Topics {
			if asked[rt.Topic] == nil {
				asked[rt.Topic] = map[int32]bool{}
			}
			for _, p := range rt.Partitions {
				asked[rt.Topic][p] = true
			}
		}
	}
	want := func(topic string, p int32) bool { return asked == nil || asked[topic][p] }

	abs := func(d string) string {
		if a, err := filepath.Abs(d); err == nil {
			return a
		}
		return filepath.Clean(d)
	}
	dirs := make([]kmsg.DescribeLogDirsResponseDir, 0, len(s.mgr.Dirs()))
	byDir := map[string]int{}
	for _, d := range s.mgr.Dirs() {
		rd := kmsg.NewDescribeLogDirsResponseDir()
		rd.Dir = abs(d)
		var st unix.Statfs_t
		if err := unix.Statfs(rd.Dir, &st); err == nil {
			rd.TotalBytes = int64(st.Blocks) * int64(st.Bsize)
			rd.UsableBytes = int64(st.Bavail) * int64(st.Bsize)
		}
		byDir[rd.Dir] = len(dirs)
		dirs = append(dirs, rd)
	}
	for _, t := range s.sortedTopics() {
		// One response topic per (dir, topic), built as partitions are
		// found in each dir.
		topicAt := map[int]int{}
		for _, p := range t.parts {
			if p.log == nil || !want(t.name, p.tp.Partition) {
				continue
			}
			i, ok := byDir[abs(filepath.Dir(p.log.Dir()))]
			if !ok {
				continue // not under a configured dir: cannot happen
			}
			rd := &dirs[i]
			j, ok := topicAt[i]
			if !ok {
				rt := kmsg.NewDescribeLogDirsResponseDirTopic()
				rt.Topic = t.name
				j = len(rd.Topics)
				topicAt[i] = j
				rd.Topics = append(rd.Topics, rt)
			}
			rp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			rp.Partition = p.tp.Partition
			rp.Size = p.log.Size()
			rp.OffsetLag = max(int64(p.log.HighWatermark()-p.log.LogEndOffset()), 0)
			rd.Topics[j].Partitions = append(rd.Topics[j].Partitions, rp)
		}
	}
	resp.Dirs = dirs
	r.reply(resp)
}
