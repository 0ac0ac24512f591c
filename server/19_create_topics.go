package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/config"
)

// CreateTopics: v0-7
//
// Topics are created durably before the response: the logs, then the
// metadata store (so a failure or a crash never leaves the store naming a
// topic whose logs were not all created); ValidateOnly runs every check and
// creates nothing. Manual replica assignments are accepted only when they
// name this broker alone. A request asking for more than 10,000 partitions
// (or metadata records) in all fails as a whole with POLICY_VIOLATION, as
// Kafka's controller does (checkCreateTopicsBounds).
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
	// Validate every topic first: the request-wide bounds need the
	// resolved partition counts.
	specs := make([]newTopicSpec, len(req.Topics))
	errs := make([]error, len(req.Topics))
	// CREATE on the cluster, else on each topic; the configs returned need
	// DESCRIBE_CONFIGS on the topic (authz_apis.go).
	names := topicNames(req.Topics, func(t *kmsg.CreateTopicsRequestTopic) string { return t.Topic })
	var mayCreate authzSet
	if !r.authorizeLog(opCreate, resCluster, acl.ClusterName, false) {
		mayCreate = r.authorizedNames(opCreate, resTopic, names)
	}
	mayDescribeConfigs := r.authorizedNamesLog(opDescribeConfigs, resTopic, names, false)
	for i := range req.Topics {
		rt := &req.Topics[i]
		if seen[rt.Topic] > 1 {
			errs[i] = topicErrf(kerr.InvalidRequest, "topic %q appears more than once in the request", rt.Topic)
			continue
		}
		if !mayCreate.ok(rt.Topic) {
			errs[i] = topicErrf(kerr.TopicAuthorizationFailed, "Authorization failed.")
			continue
		}
		specs[i], errs[i] = s.createTopicSpec(req.Version, rt)
		if errs[i] == nil {
			errs[i] = s.checkNewTopic(&specs[i])
		}
	}
	if err := s.checkCreateTopicsBounds(req, specs, errs); err != nil {
		for i := range errs {
			errs[i] = err // the whole request fails, as in Kafka
		}
	}
	mutations := s.quotas.mutations(r)
	for i, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		spec, err := specs[i], errs[i]
		if err == nil && !req.ValidateOnly {
			n := spec.partitions
			if n == -1 {
				n = s.cfg.NumPartitions
			}
			err = mutations.record(n)
		}
		if err == nil && !req.ValidateOnly {
			var t *topic
			if t, err = s.createTopic(spec); err == nil {
				st.TopicID = t.id
				spec.partitions, spec.rf = int32(len(t.parts)), t.rf
			}
		}
		if err != nil {
			st.ErrorCode = errCode(err)
			if req.Version >= 1 {
				st.ErrorMessage = errMessage(err)
			}
		} else if req.Version >= 5 && !mayDescribeConfigs.ok(rt.Topic) {
			st.ConfigErrorCode = kerr.TopicAuthorizationFailed.Code
		} else if req.Version >= 5 {
			st.NumPartitions = spec.partitions
			st.ReplicationFactor = spec.rf
			layers := s.layers.Load()
			for _, name := range config.TopicNames() {
				e := layers.Topic(name, spec.configs)
				c := kmsg.NewCreateTopicsResponseTopicConfig()
				c.Name = name
				if !e.Null {
					v := e.Value
					c.Value = &v
				}
				c.Source = int8(e.Source)
				st.Configs = append(st.Configs, c)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	mutations.done(r)
	r.reply(resp)
}

// checkCreateTopicsBounds applies Kafka's controller limits to a whole
// CreateTopics request (validate-only too); exceeding one fails every
// topic with POLICY_VIOLATION:
//   - the partitions asked for (NumPartitions, the broker default for -1,
//     or the assignment's length; invalid counts aside), summed over the
//     request, at most 10,000;
//   - the metadata records the valid topics would write (one per topic,
//     one per partition, one per config given), at most 10,000 — so one
//     topic of 10,000 partitions is already too many.
func (s *Server) checkCreateTopicsBounds(req *kmsg.CreateTopicsRequest, specs []newTopicSpec, errs []error) error {
	partitions, records := 0, 0
	for i, rt := range req.Topics {
		switch {
		case len(rt.ReplicaAssignment) > 0:
			partitions += len(rt.ReplicaAssignment)
		case rt.NumPartitions == -1:
			partitions += int(s.cfg.NumPartitions)
		case rt.NumPartitions > 0:
			partitions += int(rt.NumPartitions)
		}
		if errs[i] == nil {
			records += 1 + int(specs[i].partitions) + len(specs[i].configs)
		}
	}
	if partitions > maxPartitionsPerRequest {
		return topicErrf(kerr.PolicyViolation, "Excessively large number of partitions per request.")
	}
	if records > maxPartitionsPerRequest {
		return topicErrf(kerr.PolicyViolation, "Unable to perform excessively large batch operation.")
	}
	return nil
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
