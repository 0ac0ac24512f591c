package server

import (
	"maps"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/quota"
)

// AlterClientQuotas: v0-1
//
// Sets or removes quota values of entities: user, client-id, both, or ip
// (a null name is the default entity). Keys: producer_byte_rate and
// consumer_byte_rate (whole numbers of bytes per second),
// request_percentage and controller_mutation_rate for user and client-id
// entities; connection_creation_rate (a whole number) for ip entities.
// Anything else — an unknown or repeated entity type, ip with another
// type, an unknown key, a bad value — fails that entry with
// INVALID_REQUEST. Valid entries are stored (ZooKeeper /config/users,
// /config/clients, /config/ips with a change notification, as Kafka; the
// local store on a single node) and applied at once; ValidateOnly stores
// nothing. Needs ALTER_CONFIGS on the cluster (authz_apis.go). Every
// change is written to the audit log.
//
// Version notes:
//   - v1: flexible.
func init() { regKey(kmsg.AlterClientQuotas, 0, 1, (*Server).handleAlterClientQuotas) }

// userClientQuotaKeys and ipQuotaKeys are the keys an entity may set, and
// whether a key's value must be a whole number.
var (
	userClientQuotaKeys = map[string]bool{quota.ProducerByteRate: true, quota.ConsumerByteRate: true,
		quota.RequestPercentage: false, quota.ControllerMutationRate: false}
	ipQuotaKeys = map[string]bool{quota.ConnectionCreationRate: true}
)

func (s *Server) handleAlterClientQuotas(r *request) {
	req := r.kreq.(*kmsg.AlterClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.AlterClientQuotasResponse)
	q := s.quotas
	changes := map[string]map[string]float64{}
	slots := make([]int, 0, len(req.Entries))
	paths := make([]string, len(req.Entries))
	for i, e := range req.Entries {
		re := kmsg.NewAlterClientQuotasResponseEntry()
		for _, c := range e.Entity {
			ec := kmsg.NewAlterClientQuotasResponseEntryEntity()
			ec.Type, ec.Name = c.Type, c.Name
			re.Entity = append(re.Entity, ec)
		}
		ent, keys, bad := parseQuotaEntity(e.Entity)
		if bad == "" && q.store == nil {
			bad = "the metadata store keeps no client quotas"
		}
		cur := map[string]float64{}
		if bad == "" {
			paths[i] = ent.Path()
			if c, ok := changes[paths[i]]; ok {
				cur = c
			} else {
				cur = maps.Clone(q.Config()[paths[i]])
				if cur == nil {
					cur = map[string]float64{}
				}
			}
		}
		for _, op := range e.Ops {
			if bad != "" {
				break
			}
			whole, ok := keys[op.Key]
			switch {
			case !ok:
				bad = "Unknown quota key " + op.Key + " for the entity"
			case op.Remove:
				delete(cur, op.Key)
			case math.IsNaN(op.Value) || math.IsInf(op.Value, 0) || op.Value <= 0:
				bad = "Invalid value for " + op.Key + ": must be positive"
			case whole && op.Value != math.Trunc(op.Value):
				bad = "Invalid value for " + op.Key + ": must be a whole number"
			default:
				cur[op.Key] = op.Value
			}
		}
		if bad != "" {
			re.ErrorCode, re.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(bad)
		} else {
			changes[paths[i]] = cur
			slots = append(slots, i)
		}
		resp.Entries = append(resp.Entries, re)
	}
	if len(changes) > 0 && !req.ValidateOnly {
		if err := q.store.SetClientQuotas(changes); err != nil {
			r.log().Error("storing client quotas failed", "err", err)
			for _, i := range slots {
				resp.Entries[i].ErrorCode, resp.Entries[i].ErrorMessage = errCode(err), kmsg.StringPtr(err.Error())
			}
		} else {
			next := maps.Clone(q.Config())
			for p, vals := range changes {
				if len(vals) == 0 {
					delete(next, p)
				} else {
					next[p] = vals
				}
				r.auditChange("client quotas altered", "entity", p, "quotas", vals)
			}
			q.SetConfig(next)
		}
	}
	r.reply(resp)
}

// parseQuotaEntity validates an entity: the types user and client-id
// (alone or together) or ip, each once. It returns the entity, the keys
// it may set, or why it is invalid.
func parseQuotaEntity(parts []kmsg.AlterClientQuotasRequestEntryEntity) (quota.Entity, map[string]bool, string) {
	var e quota.Entity
	for _, p := range parts {
		def := p.Name == nil
		name := ""
		if !def {
			name = *p.Name
		}
		switch p.Type {
		case quota.EntityUser:
			if e.HasUser {
				return e, nil, "Duplicate user entity"
			}
			e.HasUser, e.User, e.UserDefault = true, name, def
		case quota.EntityClientID:
			if e.HasClient {
				return e, nil, "Duplicate client-id entity"
			}
			e.HasClient, e.Client, e.ClientDef = true, name, def
		case quota.EntityIP:
			if e.HasIP {
				return e, nil, "Duplicate ip entity"
			}
			e.HasIP, e.IP, e.IPDefault = true, name, def
		default:
			return e, nil, "Unhandled client quota entity type: " + p.Type
		}
	}
	switch {
	case e.HasIP && (e.HasUser || e.HasClient):
		return e, nil, "Invalid quota entity: ip cannot be combined with user or client-id"
	case e.HasIP:
		return e, ipQuotaKeys, ""
	case e.HasUser || e.HasClient:
		return e, userClientQuotaKeys, ""
	}
	return e, nil, "Invalid empty client quota entity"
}
