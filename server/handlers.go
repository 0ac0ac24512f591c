package server

import (
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/metrics"
	"github.com/kvlog/kvlog/server/wire"
)

// handlerFunc serves one request. It must complete r exactly once, now or
// later (r.reply, r.replyFetch, r.noReply or r.fail); a panic is caught by
// the connection and closes it.
type handlerFunc func(s *Server, r *request)

type handler struct {
	key      int16
	versions wire.VersionRange
	fn       handlerFunc
	// advMin, when below versions.Min, is the minimum ApiVersions
	// advertises (advertiseFrom); requests below versions.Min are still
	// refused.
	advMin int16
}

// handlers is the registry: each NN_name.go file registers its key and
// the version range it serves in init. ApiVersions advertises exactly this
// table; keys not registered (e.g. the group APIs until the coordinator
// lands) are unknown to the broker.
var handlers = map[int16]*handler{}

// regKey registers the handler for key serving versions [min, max].
func regKey(key kmsg.Key, min, max int16, fn handlerFunc) {
	k := key.Int16()
	if _, dup := handlers[k]; dup {
		panic(fmt.Sprintf("key %d registered twice", k))
	}
	if req := kmsg.RequestForKey(k); req == nil || max > req.MaxVersion() {
		panic(fmt.Sprintf("key %d: kmsg cannot encode v%d", k, max))
	}
	handlers[k] = &handler{key: k, versions: wire.VersionRange{Min: min, Max: max}, fn: fn, advMin: min}
}

// advertiseFrom makes ApiVersions advertise key from version min although
// the broker serves it only from its registered minimum: requests below
// that still close the connection. Apache Kafka 4.0 does this for Produce
// v0-2 (docs/protocol.md#librdkafka-and-produce-v0) because librdkafka before 2.8 turns gzip, snappy and
// lz4 compression off when a broker's Produce range does not include v0.
// Clients send the highest common version, so no client sends the
// unserved ones.
func advertiseFrom(key kmsg.Key, min int16) {
	h := handlers[key.Int16()]
	if h == nil || min > h.versions.Min {
		panic(fmt.Sprintf("advertiseFrom(%v, %d): key not registered or minimum not lowered", key, min))
	}
	h.advMin = min
}

// served reports the version range the broker serves for key.
func (s *Server) served(key int16) (wire.VersionRange, bool) {
	h, ok := handlers[key]
	if !ok {
		return wire.VersionRange{}, false
	}
	return h.versions, true
}

func (s *Server) handler(key int16) *handler { return handlers[key] }

// apiVersionKeys is the ApiVersions table, by key.
func (s *Server) apiVersionKeys() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]int16, 0, len(handlers))
	for k := range handlers {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	out := make([]kmsg.ApiVersionsResponseApiKey, 0, len(keys))
	for _, k := range keys {
		h := handlers[k]
		ak := kmsg.NewApiVersionsResponseApiKey()
		ak.ApiKey = k
		ak.MinVersion = h.advMin
		ak.MaxVersion = h.versions.Max
		out = append(out, ak)
	}
	return out
}

// apiName names a key for logs and metrics (metrics.APIName).
func apiName(key int16) string { return metrics.APIName(key) }
