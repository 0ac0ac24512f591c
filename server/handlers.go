package server

import (
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handlerFunc serves one request. It must complete r exactly once, now or
// later (r.reply, r.replyFetch, r.noReply or r.fail); a panic is caught by
// the connection and closes it.
type handlerFunc func(s *Server, r *request)

type handler struct {
	key      int16
	versions versionRange
	fn       handlerFunc
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
	handlers[k] = &handler{key: k, versions: versionRange{min, max}, fn: fn}
}

// served reports the version range the broker serves for key.
func (s *Server) served(key int16) (versionRange, bool) {
	h, ok := handlers[key]
	if !ok {
		return versionRange{}, false
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
		ak.MinVersion = h.versions.min
		ak.MaxVersion = h.versions.max
		out = append(out, ak)
	}
	return out
}

// apiName names a key for logs and metrics.
func apiName(key int16) string {
	if n := kmsg.NameForKey(key); n != "Unknown" {
		return n
	}
	return fmt.Sprintf("Unknown%d", key)
}
