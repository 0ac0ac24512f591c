package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreateTopics: v0-7
//
// Topics are created durably (metadata store, then logs) before the
// response; ValidateOnly runs every check and creates nothing. Manual
// replica assignments are accepted only when they name this broker alone.
//
// Version notes:
//   - v1: ValidateOnly, ErrorMessage.
//   - v4: NumPartitions / ReplicationFactor -1 mean the broker defaults (KIP-464).
//   - v5: flexible; the response carries the resulting partitions,
//     replication factor and configs.
//   - v7: TopicID in the response.
func init() { regKey(kmsg.CreateTopics, 0, 7, (*Server).handleCreateTopics) }

func (s *Server) handleCreateTopics(r *request) {
	req := r.kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)

	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		setErr := func(err error) {
			st.ErrorCode = errCode(err)
			if req.Version >= 1 {
				st.ErrorMessage = errMessage(err)
			}
		}
		if seen[rt.Topic] > 1 {
			setErr(topicErrf(kerr.InvalidRequest, "topic %q appears more than once in the request", rt.Topic))
			resp.Topics = append(resp.Topics, st)
			continue
		}
		spec, err := s.createTopicSpec(req.Version, &rt)
		if err == nil {
			if req.ValidateOnly {
				err = s.checkNewTopic(&spec)
			} else {
				var t *topic
				if t, err = s.createTopic(spec); err == nil {
					st.TopicID = t.id
					spec.partitions, spec.rf = int32(len(t.parts)), t.rf
				}
			}
		}
		if err != nil {
			setErr(err)
		} else if req.Version >= 5 {
			st.NumPartitions = spec.partitions
			st.ReplicationFactor = spec.rf
			layers := s.layers.Load()
			for _, name := range topicConfigNames {
				e := layers.topicValue(name, spec.configs)
				c := kmsg.NewCreateTopicsResponseTopicConfig()
				c.Name = name
				if !e.null {
					v := e.value
					c.Value = &v
				}
				c.Source = int8(e.source)
				st.Configs = append(st.Configs, c)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	r.reply(resp)
}

// createTopicSpec turns a request topic into a spec, checking the fields
// only the request can get wrong (assignments, -1 before v4, configs).
func (s *Server) createTopicSpec(version int16, rt *kmsg.CreateTopicsRequestTopic) (newTopicSpec, error) {
	spec := newTopicSpec{name: rt.Topic, partitions: rt.NumPartitions, rf: rt.ReplicationFactor, configs: map[string]string{}}
	for _, c := range rt.Configs {
		if c.Value == nil {
			return spec, topicErrf(kerr.InvalidConfig, "config %q has a null value", c.Name)
		}
		spec.configs[c.Name] = *c.Value
	}
	if len(rt.ReplicaAssignment) > 0 {
		if rt.NumPartitions != -1 || rt.ReplicationFactor != -1 {
			return spec, topicErrf(kerr.InvalidRequest, "both replica assignment and partitions/replication factor were given")
		}
		spec.partitions = int32(len(rt.ReplicaAssignment))
		for i, a := range rt.ReplicaAssignment {
			if a.Partition != int32(i) {
				return spec, topicErrf(kerr.InvalidReplicaAssignment, "replica assignment partitions must be 0..%d in order", len(rt.ReplicaAssignment)-1)
			}
			if len(a.Replicas) != 1 || a.Replicas[0] != s.cfg.NodeID {
				return spec, topicErrf(kerr.InvalidReplicaAssignment, "partition %d: replicas %v; only broker %d exists", a.Partition, a.Replicas, s.cfg.NodeID)
			}
		}
		spec.rf = 1
		return spec, nil
	}
	if version < 4 && (spec.partitions == -1 || spec.rf == -1) {
		if spec.partitions == -1 {
			return spec, topicErrf(kerr.InvalidPartitions, "NumPartitions -1 needs CreateTopics v4+")
		}
		return spec, topicErrf(kerr.InvalidReplicationFactor, "ReplicationFactor -1 needs CreateTopics v4+")
	}
	return spec, nil
}
