package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/client"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
)

// Key lookups on the HTTP listener (docs/http-keys.md, with the OpenAPI
// description in docs/openapi-keys.yaml): a key's latest committed value
// in a compacted topic, read from the partition's key index (engine
// Log.Lookup), without replaying the topic.
//
//   - GET /v1/topics/{topic}/keys/{key} (or GET /v1/topics/{topic}/keys
//     ?key_b64=… for binary keys): 200 with the value as the body and the
//     record's metadata in X-Kvlog-* headers (?format=json: everything as
//     JSON), 404 when the key has no live value.
//   - POST /v1/topics/{topic}/keys:batchGet: many keys in one request.
//   - GET /v1/topics/{topic}/keys:stats: each hosted partition's index
//     (entries, RAM, applied offset; ?load=true loads them).
//
// The partition is the key's under Kafka's default partitioner (murmur2,
// as producers place keyed records) unless ?partition= names one. Only
// the partition's leader answers; a follower redirects (307) to the
// leader's host on this listener's port. ?min_offset=N waits (at most
// ?timeout_ms, default 5000) until the record at offset N is committed,
// for reading one's own write; otherwise 409 REQUEST_TIMED_OUT. Errors are
// JSON {"error": <Kafka error name>, "message": …}.

const (
	keyLookupDefaultTimeout = 5 * time.Second
	keyLookupMaxTimeout     = time.Minute
	keyBatchMaxKeys         = 1000
	keyBatchMaxBody         = 8 << 20
)

func (s *Server) registerKeyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/topics/{topic}/keys/{key}", s.serveKeyGet)
	mux.HandleFunc("GET /v1/topics/{topic}/keys", s.serveKeyGet)
	mux.HandleFunc("POST /v1/topics/{topic}/keys:batchGet", s.serveKeyBatchGet)
	mux.HandleFunc("GET /v1/topics/{topic}/keys:stats", s.serveKeyStats)
}

// keyIndexStats is one partition's key index in GET …/keys:stats.
type keyIndexStats struct {
	Partition int32 `json:"partition"`
	Loaded    bool  `json:"loaded"`
	Entries   int   `json:"entries"`
	Bytes     int64 `json:"bytes"`
	Applied   int64 `json:"applied_offset"`
	Loads     int64 `json:"loads"`
	SlowScans int64 `json:"slow_scans"`
	Replayed  int64 `json:"replayed_records"`
}

// serveKeyStats reports the key index of each partition this broker
// hosts (loaded on first lookup; ?load=true loads them now).
func (s *Server) serveKeyStats(w http.ResponseWriter, r *http.Request) {
	t := s.topic(r.PathValue("topic"))
	if t == nil {
		writeKeyError(w, keyErrorf(http.StatusNotFound, kerr.UnknownTopicOrPartition, "topic %q does not exist", r.PathValue("topic")))
		return
	}
	out := []keyIndexStats{}
	for i, p := range t.parts {
		if p.log == nil {
			continue
		}
		if r.URL.Query().Get("load") == "true" {
			if err := p.log.LoadKeyIndex(); err != nil {
				writeKeyError(w, engineKeyError(err))
				return
			}
		}
		st := p.log.KeyIndexStats()
		out = append(out, keyIndexStats{Partition: int32(i), Loaded: st.Loaded, Entries: st.Entries, Bytes: st.Bytes, Applied: int64(st.Applied), Loads: st.Loads, SlowScans: st.SlowScans, Replayed: st.Replayed})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// errNotLeaderOrFollower is error code 6 under its current Kafka name
// (kerr still calls it NOT_LEADER_FOR_PARTITION).
var errNotLeaderOrFollower = &kerr.Error{Message: "NOT_LEADER_OR_FOLLOWER", Code: kerr.NotLeaderForPartition.Code, Retriable: true, Description: kerr.NotLeaderForPartition.Description}

// keyError is an HTTP error answer: status and Kafka error.
type keyError struct {
	status int
	kerr   *kerr.Error
	msg    string
	leader int32 // for NOT_LEADER_OR_FOLLOWER: the leader's id, -1 unknown
}

func (e *keyError) Error() string { return e.kerr.Message + ": " + e.msg }

func keyErrorf(status int, ke *kerr.Error, format string, args ...any) *keyError {
	return &keyError{status: status, kerr: ke, msg: fmt.Sprintf(format, args...), leader: -1}
}

type keyErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Leader  *int32 `json:"leader,omitempty"`
}

func writeKeyError(w http.ResponseWriter, e *keyError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	body := keyErrorBody{Error: e.kerr.Message, Message: e.msg}
	if e.leader >= 0 {
		body.Leader = &e.leader
	}
	json.NewEncoder(w).Encode(body)
}

// engineKeyError maps an engine error to its answer.
func engineKeyError(err error) *keyError {
	ke := toKerr(err)
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, engine.ErrKeyIndexDisabled), errors.Is(err, engine.ErrInvalidRecord):
		status = http.StatusBadRequest
	case errors.Is(err, engine.ErrClosed):
		status, ke = http.StatusServiceUnavailable, errNotLeaderOrFollower
	}
	return &keyError{status: status, kerr: ke, msg: err.Error(), leader: -1}
}

// keyResult is one lookup's JSON answer.
type keyResult struct {
	Topic        string      `json:"topic"`
	Partition    int32       `json:"partition"`
	Found        bool        `json:"found"`
	KeyB64       string      `json:"key_b64"`
	Offset       *int64      `json:"offset,omitempty"`
	Timestamp    *int64      `json:"timestamp,omitempty"`
	LeaderEpoch  *int32      `json:"leader_epoch,omitempty"`
	ValueB64     *string     `json:"value_b64,omitempty"`
	Headers      []keyHeader `json:"headers,omitempty"`
	StableOffset int64       `json:"stable_offset"`
	Error        string      `json:"error,omitempty"`
	Message      string      `json:"message,omitempty"`
	Leader       *int32      `json:"leader,omitempty"`
}

type keyHeader struct {
	Key      string  `json:"key"`
	ValueB64 *string `json:"value_b64"`
}

func resultJSON(topic string, p int32, key []byte, res engine.KeyLookup) keyResult {
	out := keyResult{Topic: topic, Partition: p, Found: res.Found, KeyB64: base64.StdEncoding.EncodeToString(key), StableOffset: int64(res.Limit)}
	if !res.Found {
		return out
	}
	off, ts, ep := int64(res.Offset), res.Timestamp, res.LeaderEpoch
	v := base64.StdEncoding.EncodeToString(res.Value)
	out.Offset, out.Timestamp, out.LeaderEpoch, out.ValueB64 = &off, &ts, &ep, &v
	for _, h := range res.Headers {
		kh := keyHeader{Key: string(h.Key)}
		if h.Value != nil {
			hv := base64.StdEncoding.EncodeToString(h.Value)
			kh.ValueB64 = &hv
		}
		out.Headers = append(out.Headers, kh)
	}
	return out
}

// keyTarget resolves a lookup's partition and checks this broker leads
// it: the partition, or an error (with the leader for a follower).
func (s *Server) keyTarget(topic string, key []byte, explicit int32) (*partition, int32, *keyError) {
	t := s.topic(topic)
	if t == nil || len(t.parts) == 0 {
		return nil, -1, keyErrorf(http.StatusNotFound, kerr.UnknownTopicOrPartition, "topic %q does not exist", topic)
	}
	p := explicit
	if p < 0 {
		p = client.PartitionFor(key, int32(len(t.parts)))
	} else if int(p) >= len(t.parts) {
		return nil, p, keyErrorf(http.StatusNotFound, kerr.UnknownTopicOrPartition, "topic %q has %d partitions, no partition %d", topic, len(t.parts), p)
	}
	part := t.parts[p]
	if part.log == nil || part.rep == nil || part.rep.Role() != replica.RoleLeader {
		e := keyErrorf(http.StatusServiceUnavailable, errNotLeaderOrFollower, "this broker does not lead %s-%d", topic, p)
		if parts, ok := s.view().partitions(topic); ok && int(p) < len(parts) && parts[p].leader >= 0 && parts[p].leader != s.cfg.NodeID {
			e.leader = parts[p].leader
		}
		return nil, p, e
	}
	return part, p, nil
}

// leaderURL is where a follower redirects a request: the leader's
// advertised host, on this HTTP listener's port (brokers do not publish
// their HTTP listeners; a deployment gives them all the same port). No
// URL when that would be this listener itself.
func (s *Server) leaderURL(r *http.Request, leader int32) (string, bool) {
	eps := s.view().brokerEndpoints()[leader]
	if len(eps) == 0 {
		return "", false
	}
	_, port, err := net.SplitHostPort(s.cfg.HTTPListener)
	if err != nil || port == "" {
		return "", false
	}
	host := net.JoinHostPort(eps[0].Host, port)
	if host == r.Host || host == s.cfg.HTTPListener {
		// Brokers on one host with different HTTP ports: the guess
		// would point back here.
		return "", false
	}
	u := *r.URL
	u.Scheme, u.Host = "http", host
	if r.TLS != nil {
		u.Scheme = "https"
	}
	return u.String(), true
}

// awaitStable waits until every offset below min+1 is committed (the
// partition's last stable offset passes min), for at most timeout on the
// broker's clock, or until ctx ends (the client left). It waits as a
// parked fetch does, in the partition manager (replica.Manager.Park):
// woken when the partition's high watermark moves (the last stable offset
// moves only with it), its role changes, the broker shuts down, or the
// deadline passes. A wait the client left stays registered until one of
// those, at most timeout.
func (s *Server) awaitStable(ctx context.Context, part *partition, min engine.Offset, timeout time.Duration) *keyError {
	deadline := s.clock.Now().Add(timeout)
	timedOut := func() *keyError {
		return keyErrorf(http.StatusConflict, kerr.RequestTimedOut, "%s: offset %d not committed yet (last stable offset %d)", part.tp, min, part.log.LastStableOffset())
	}
	for {
		seen := part.log.HighWatermark() // before the check: a later move wakes the wait
		if part.log.LastStableOffset() > min {
			return nil
		}
		if part.rep.Role() != replica.RoleLeader {
			return keyErrorf(http.StatusServiceUnavailable, errNotLeaderOrFollower, "%s: no longer the leader", part.tp)
		}
		wait := deadline.Sub(s.clock.Now())
		if wait <= 0 {
			return timedOut()
		}
		woke := make(chan bool, 1)
		s.replicas.Park([]replica.Watched{{P: part.rep, Seen: seen}}, wait, func(final bool) { woke <- final })
		select {
		case final := <-woke:
			if final { // the deadline, or the broker shutting down
				if part.log.LastStableOffset() > min {
					return nil
				}
				return timedOut()
			}
		case <-ctx.Done():
			return timedOut()
		}
	}
}

func min2(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

func queryInt(v, name string, def int64) (int64, *keyError) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, keyErrorf(http.StatusBadRequest, kerr.InvalidRequest, "%s=%q: want a non-negative integer", name, v)
	}
	return n, nil
}

// keyQuery is the query parameters of a single lookup.
type keyQuery struct {
	keyB64, format, partition, minOffset, timeoutMs string
}

// parseKeyQuery reads a lookup's parameters from a raw query the way
// url.ParseQuery and Values.Get do (the first value of each name; a pair
// holding a ';' or not unescaping is skipped), without building the map:
// this is the hot path of single lookups.
func parseKeyQuery(raw string) keyQuery {
	var q keyQuery
	var seen [5]bool
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		name, val, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(name, "%+") {
			var err error
			if name, err = url.QueryUnescape(name); err != nil {
				continue
			}
		}
		var i int
		var dst *string
		switch name {
		case "key_b64":
			i, dst = 0, &q.keyB64
		case "format":
			i, dst = 1, &q.format
		case "partition":
			i, dst = 2, &q.partition
		case "min_offset":
			i, dst = 3, &q.minOffset
		case "timeout_ms":
			i, dst = 4, &q.timeoutMs
		default:
			continue
		}
		if strings.ContainsAny(val, "%+") {
			var err error
			if val, err = url.QueryUnescape(val); err != nil {
				continue
			}
		}
		if !seen[i] {
			seen[i], *dst = true, val
		}
	}
	return q
}

func (s *Server) serveKeyGet(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	q := parseKeyQuery(r.URL.RawQuery)
	var key []byte
	if k := r.PathValue("key"); k != "" {
		key = []byte(k)
	} else if kb := q.keyB64; kb != "" {
		var err error
		if key, err = decodeB64(kb); err != nil {
			writeKeyError(w, keyErrorf(http.StatusBadRequest, kerr.InvalidRequest, "key_b64: %v", err))
			return
		}
	} else {
		writeKeyError(w, keyErrorf(http.StatusBadRequest, kerr.InvalidRequest, "no key: use /v1/topics/{topic}/keys/{key} or ?key_b64="))
		return
	}
	explicit, kerrv := queryInt(q.partition, "partition", -1)
	if kerrv == nil && explicit > 1<<31-1 {
		kerrv = keyErrorf(http.StatusBadRequest, kerr.InvalidRequest, "partition %d", explicit)
	}
	minOffset, kerr2 := queryInt(q.minOffset, "min_offset", -1)
	timeoutMs, kerr3 := queryInt(q.timeoutMs, "timeout_ms", keyLookupDefaultTimeout.Milliseconds())
	for _, e := range []*keyError{kerrv, kerr2, kerr3} {
		if e != nil {
			writeKeyError(w, e)
			return
		}
	}
	part, p, e := s.keyTarget(topic, key, int32(explicit))
	if e != nil {
		if e.leader >= 0 {
			if u, ok := s.leaderURL(r, e.leader); ok {
				w.Header().Set("X-Kvlog-Leader", strconv.Itoa(int(e.leader)))
				http.Redirect(w, r, u, http.StatusTemporaryRedirect)
				return
			}
		}
		writeKeyError(w, e)
		return
	}
	if minOffset >= 0 {
		timeout := min2(time.Duration(timeoutMs)*time.Millisecond, keyLookupMaxTimeout)
		if e := s.awaitStable(r.Context(), part, engine.Offset(minOffset), timeout); e != nil {
			writeKeyError(w, e)
			return
		}
	}
	res, err := part.log.Lookup(key)
	if err != nil {
		writeKeyError(w, engineKeyError(err))
		return
	}
	h := w.Header()
	if q.format == "json" {
		h.Set("X-Kvlog-Partition", strconv.Itoa(int(p)))
		h.Set("X-Kvlog-Stable-Offset", strconv.FormatInt(int64(res.Limit), 10))
		h.Set("Content-Type", "application/json")
		if !res.Found {
			w.WriteHeader(http.StatusNotFound)
		}
		json.NewEncoder(w).Encode(resultJSON(topic, p, key, res))
		return
	}
	if !res.Found {
		h.Set("X-Kvlog-Partition", strconv.Itoa(int(p)))
		h.Set("X-Kvlog-Stable-Offset", strconv.FormatInt(int64(res.Limit), 10))
		writeKeyError(w, &keyError{status: http.StatusNotFound, kerr: &kerr.Error{Message: "KEY_NOT_FOUND"}, msg: fmt.Sprintf("no live value for the key in %s-%d below offset %d", topic, p, res.Limit), leader: -1})
		return
	}
	setValueHeaders(h, p, res)
	w.Write(res.Value)
}

// valueHeaderNames are the headers of a found value, in canonical form.
var valueHeaderNames = [...]string{"X-Kvlog-Partition", "X-Kvlog-Stable-Offset", "Content-Type", "X-Kvlog-Offset", "X-Kvlog-Timestamp", "X-Kvlog-Leader-Epoch", "X-Kvlog-Header-Count", "Content-Length"}

// setValueHeaders sets a found value's headers: assigned directly, names
// already canonical, the values in one allocation (this is the hot path
// of single lookups).
func setValueHeaders(h http.Header, p int32, res engine.KeyLookup) {
	var nums [128]byte
	b := nums[:0]
	var ends [len(valueHeaderNames)]int
	for i := range valueHeaderNames {
		switch i {
		case 0:
			b = strconv.AppendInt(b, int64(p), 10)
		case 1:
			b = strconv.AppendInt(b, int64(res.Limit), 10)
		case 2:
			b = append(b, "application/octet-stream"...)
		case 3:
			b = strconv.AppendInt(b, int64(res.Offset), 10)
		case 4:
			b = strconv.AppendInt(b, res.Timestamp, 10)
		case 5:
			b = strconv.AppendInt(b, int64(res.LeaderEpoch), 10)
		case 6:
			b = strconv.AppendInt(b, int64(len(res.Headers)), 10)
		case 7:
			b = strconv.AppendInt(b, int64(len(res.Value)), 10)
		}
		ends[i] = len(b)
	}
	all := string(b)
	vals := make([]string, len(valueHeaderNames))
	start := 0
	for i, name := range valueHeaderNames {
		vals[i] = all[start:ends[i]]
		start = ends[i]
		h[name] = vals[i : i+1 : i+1]
	}
}

// decodeB64 decodes standard or URL-safe base64, padded or not: the
// first of the four encodings accepting s. They decode a string the same
// way when more than one accepts it, so the likely one is tried first,
// read off the string's alphabet ('-' or '_': URL-safe) and length (a
// multiple of 4: padded).
func decodeB64(s string) ([]byte, error) {
	urlSafe := strings.ContainsAny(s, "-_")
	var guess *base64.Encoding
	switch {
	case len(s)%4 == 0 && urlSafe:
		guess = base64.URLEncoding
	case len(s)%4 == 0:
		guess = base64.StdEncoding
	case urlSafe:
		guess = base64.RawURLEncoding
	default:
		guess = base64.RawStdEncoding
	}
	if b, err := guess.DecodeString(s); err == nil {
		return b, nil
	}
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawURLEncoding, base64.RawStdEncoding} {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, err
}

type batchGetRequest struct {
	Keys []struct {
		Key       *string `json:"key"`
		KeyB64    *string `json:"key_b64"`
		Partition *int32  `json:"partition"`
	} `json:"keys"`
}

type batchGetResponse struct {
	Results []keyResult `json:"results"`
}

func (s *Server) serveKeyBatchGet(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	body, err := io.ReadAll(io.LimitReader(r.Body, keyBatchMaxBody+1))
	if err != nil {
		writeKeyError(w, keyErrorf(http.StatusBadRequest, kerr.InvalidRequest, "reading the body: %v", err))
		return
	}
	if len(body) > keyBatchMaxBody {
		writeKeyError(w, keyErrorf(http.StatusRequestEntityTooLarge, kerr.InvalidRequest, "body larger than %d bytes", keyBatchMaxBody))
		return
	}
	var req batchGetRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeKeyError(w, keyErrorf(http.StatusBadRequest, kerr.InvalidRequest, "body: %v", err))
		return
	}
	if len(req.Keys) > keyBatchMaxKeys {
		writeKeyError(w, keyErrorf(http.StatusBadRequest, kerr.InvalidRequest, "%d keys, at most %d per request", len(req.Keys), keyBatchMaxKeys))
		return
	}
	if s.topic(topic) == nil {
		writeKeyError(w, keyErrorf(http.StatusNotFound, kerr.UnknownTopicOrPartition, "topic %q does not exist", topic))
		return
	}
	resp := batchGetResponse{Results: make([]keyResult, len(req.Keys))}
	for i, k := range req.Keys {
		var key []byte
		switch {
		case k.Key != nil && k.KeyB64 == nil:
			key = []byte(*k.Key)
		case k.KeyB64 != nil && k.Key == nil:
			if key, err = decodeB64(*k.KeyB64); err != nil {
				resp.Results[i] = keyResult{Topic: topic, Partition: -1, Error: kerr.InvalidRequest.Message, Message: fmt.Sprintf("keys[%d].key_b64: %v", i, err)}
				continue
			}
		default:
			resp.Results[i] = keyResult{Topic: topic, Partition: -1, Error: kerr.InvalidRequest.Message, Message: fmt.Sprintf("keys[%d]: exactly one of key and key_b64", i)}
			continue
		}
		explicit := int32(-1)
		if k.Partition != nil {
			explicit = *k.Partition
		}
		part, p, e := s.keyTarget(topic, key, explicit)
		if e == nil {
			res, err := part.log.Lookup(key)
			if err == nil {
				resp.Results[i] = resultJSON(topic, p, key, res)
				continue
			}
			e = engineKeyError(err)
		}
		kr := keyResult{Topic: topic, Partition: p, KeyB64: base64.StdEncoding.EncodeToString(key), Error: e.kerr.Message, Message: e.msg}
		if e.leader >= 0 {
			l := e.leader
			kr.Leader = &l
		}
		resp.Results[i] = kr
	}
	w.Header().Set("Content-Type", "application/json")
	buf := append(make([]byte, 0, 64+len(resp.Results)*256), `{"results":[`...)
	for i := range resp.Results {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendKeyResult(buf, &resp.Results[i])
	}
	buf = append(buf, "]}\n"...)
	w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
	w.Write(buf)
}

// appendKeyResult appends r as encoding/json writes it (the same fields,
// order and omissions; TestAppendKeyResult checks), without reflection:
// batchGet answers encode many of them.
func appendKeyResult(b []byte, r *keyResult) []byte {
	b = append(b, `{"topic":`...)
	b = appendJSONString(b, r.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(r.Partition), 10)
	b = append(b, `,"found":`...)
	b = strconv.AppendBool(b, r.Found)
	b = append(b, `,"key_b64":`...)
	b = appendJSONString(b, r.KeyB64)
	if r.Offset != nil {
		b = append(b, `,"offset":`...)
		b = strconv.AppendInt(b, *r.Offset, 10)
	}
	if r.Timestamp != nil {
		b = append(b, `,"timestamp":`...)
		b = strconv.AppendInt(b, *r.Timestamp, 10)
	}
	if r.LeaderEpoch != nil {
		b = append(b, `,"leader_epoch":`...)
		b = strconv.AppendInt(b, int64(*r.LeaderEpoch), 10)
	}
	if r.ValueB64 != nil {
		b = append(b, `,"value_b64":`...)
		b = appendJSONString(b, *r.ValueB64)
	}
	if len(r.Headers) > 0 {
		b = append(b, `,"headers":[`...)
		for i, h := range r.Headers {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"key":`...)
			b = appendJSONString(b, h.Key)
			b = append(b, `,"value_b64":`...)
			if h.ValueB64 == nil {
				b = append(b, "null"...)
			} else {
				b = appendJSONString(b, *h.ValueB64)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"stable_offset":`...)
	b = strconv.AppendInt(b, r.StableOffset, 10)
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.Error)
	}
	if r.Message != "" {
		b = append(b, `,"message":`...)
		b = appendJSONString(b, r.Message)
	}
	if r.Leader != nil {
		b = append(b, `,"leader":`...)
		b = strconv.AppendInt(b, int64(*r.Leader), 10)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string the way encoding/json
// does: strings of plain printable ASCII (base64, topic names) as they
// are, anything else through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
