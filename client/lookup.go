package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Point lookups without replay: kvlog brokers keep a key index on every
// partition of a compacted topic and answer a key's latest committed value
// on their HTTP listener (GET /v1/topics/{topic}/keys/{key}). Lookup and
// LookupMany use that API; they need a kvlog broker (a Kafka broker has no
// such API) and its HTTP listener address (kvlog.http.listener).

// LookupOptions are the parameters of a lookup.
type LookupOptions struct {
	// HTTP is the broker's HTTP listener: "host:port" or a base URL
	// ("http://host:port"). Required. A follower redirects to the
	// partition's leader, which the lookup follows.
	HTTP string
	// Partition, when >= 0 and Explicit is set, is asked instead of the
	// key's partition under Kafka's default partitioner.
	Partition int32
	Explicit  bool
	// MinOffset, when >= 0 and AtOffset is set, makes the broker wait
	// until the record at that offset of the key's partition is committed
	// (read-your-writes: the Position a Put returned), at most Wait.
	MinOffset int64
	AtOffset  bool
	// Wait bounds the MinOffset wait (default 5s on the broker).
	Wait time.Duration
	// Client is the HTTP client to use (default http.DefaultClient).
	Client *http.Client
}

// LookupResult is a key's latest committed record.
type LookupResult struct {
	// Found is false when the key has no live value (never written,
	// deleted, or compacted away after its deletion).
	Found     bool
	Partition int32
	Offset    int64
	Timestamp time.Time
	Key       []byte
	Value     []byte
	Headers   []kgo.RecordHeader
	// StableOffset is the partition's offset the answer was taken at:
	// records below it were considered (the high watermark, or the last
	// stable offset while a transaction is open).
	StableOffset int64
}

// LookupError is an error answer of the broker's lookup API: Code is the
// Kafka error name (UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER,
// REQUEST_TIMED_OUT, INVALID_REQUEST, …).
type LookupError struct {
	Status  int
	Code    string
	Message string
}

func (e *LookupError) Error() string {
	s := fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message)
	switch {
	case e.Is(ErrTopicNotFound):
		return ErrTopicNotFound.Error() + ": " + s
	case e.Is(ErrNotCompacted):
		return ErrNotCompacted.Error() + ": " + s
	}
	return "kvlog/client: lookup: " + s
}

// Is makes errors.Is(err, ErrTopicNotFound) and ErrNotCompacted work.
func (e *LookupError) Is(target error) bool {
	switch target {
	case ErrTopicNotFound:
		return e.Code == "UNKNOWN_TOPIC_OR_PARTITION"
	case ErrNotCompacted:
		return e.Code == "INVALID_REQUEST" && strings.Contains(e.Message, "key index")
	}
	return false
}

type lookupJSON struct {
	Partition    int32  `json:"partition"`
	Found        bool   `json:"found"`
	KeyB64       string `json:"key_b64"`
	Offset       *int64 `json:"offset"`
	Timestamp    *int64 `json:"timestamp"`
	ValueB64     string `json:"value_b64"`
	StableOffset int64  `json:"stable_offset"`
	Headers      []struct {
		Key      string  `json:"key"`
		ValueB64 *string `json:"value_b64"`
	} `json:"headers"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

func (j *lookupJSON) result() (LookupResult, error) {
	r := LookupResult{Found: j.Found, Partition: j.Partition, StableOffset: j.StableOffset}
	var err error
	if r.Key, err = base64.StdEncoding.DecodeString(j.KeyB64); err != nil {
		return r, fmt.Errorf("kvlog/client: lookup: key_b64: %w", err)
	}
	if !j.Found {
		return r, nil
	}
	if j.Offset != nil {
		r.Offset = *j.Offset
	}
	if j.Timestamp != nil {
		r.Timestamp = time.UnixMilli(*j.Timestamp)
	}
	if r.Value, err = base64.StdEncoding.DecodeString(j.ValueB64); err != nil {
		return r, fmt.Errorf("kvlog/client: lookup: value_b64: %w", err)
	}
	for _, h := range j.Headers {
		rh := kgo.RecordHeader{Key: h.Key}
		if h.ValueB64 != nil {
			if rh.Value, err = base64.StdEncoding.DecodeString(*h.ValueB64); err != nil {
				return r, fmt.Errorf("kvlog/client: lookup: header value: %w", err)
			}
		}
		r.Headers = append(r.Headers, rh)
	}
	return r, nil
}

func (o LookupOptions) base() (string, error) {
	if o.HTTP == "" {
		return "", fmt.Errorf("%w: LookupOptions.HTTP (the broker's HTTP listener) is required", ErrInvalidOption)
	}
	if strings.Contains(o.HTTP, "://") {
		return strings.TrimSuffix(o.HTTP, "/"), nil
	}
	return "http://" + o.HTTP, nil
}

func (o LookupOptions) client() *http.Client {
	if o.Client != nil {
		return o.Client
	}
	return http.DefaultClient
}

// Lookup returns key's latest committed value in topic, read by the
// partition leader from its key index: no replay, about one disk read.
// Without LookupOptions.Client, on a plain HTTP listener, it uses its own
// keep-alive connections (lookup_conn.go); with a Client, net/http.
func Lookup(ctx context.Context, topic string, key []byte, opts LookupOptions) (LookupResult, error) {
	if key == nil {
		return LookupResult{}, ErrNilKey
	}
	base, err := opts.base()
	if err != nil {
		return LookupResult{}, err
	}
	if opts.Client == nil {
		e, err := endpointFor(base)
		if err != nil {
			return LookupResult{}, err
		}
		if e.direct {
			return lookupDirect(ctx, e, topic, key, opts)
		}
	}
	q := url.Values{}
	q.Set("key_b64", base64.StdEncoding.EncodeToString(key))
	q.Set("format", "json")
	if opts.Explicit {
		q.Set("partition", strconv.Itoa(int(opts.Partition)))
	}
	if opts.AtOffset {
		q.Set("min_offset", strconv.FormatInt(opts.MinOffset, 10))
	}
	if opts.Wait > 0 {
		q.Set("timeout_ms", strconv.FormatInt(opts.Wait.Milliseconds(), 10))
	}
	return lookupNetHTTP(ctx, opts.client(), topic, base+"/v1/topics/"+url.PathEscape(topic)+"/keys?"+q.Encode())
}

// lookupNetHTTP asks u (a lookup URL with format=json) through hc.
func lookupNetHTTP(ctx context.Context, hc *http.Client, topic, u string) (LookupResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return LookupResult{}, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	var j lookupJSON
	if err := doLookup(hc, req, &j); err != nil {
		return LookupResult{}, topicErr(topic, "lookup", err)
	}
	return j.result()
}

// lookupDirect is Lookup on the own transport. It asks for the raw
// answer (the value as the body, its metadata in X-Kvlog-* headers), and
// again as JSON when the record has headers (the raw answer only counts
// them). It follows a follower's redirect to the leader.
func lookupDirect(ctx context.Context, e *lookupEndpoint, topic string, key []byte, opts LookupOptions) (LookupResult, error) {
	target := make([]byte, 0, len(e.prefix)+len(topic)+len(key)*4/3+96)
	target = append(target, e.prefix...)
	target = append(target, "/v1/topics/"...)
	target = append(target, url.PathEscape(topic)...)
	target = append(target, "/keys?key_b64="...)
	target = base64.RawURLEncoding.AppendEncode(target, key)
	if opts.Explicit {
		target = append(target, "&partition="...)
		target = strconv.AppendInt(target, int64(opts.Partition), 10)
	}
	if opts.AtOffset {
		target = append(target, "&min_offset="...)
		target = strconv.AppendInt(target, opts.MinOffset, 10)
	}
	if opts.Wait > 0 {
		target = append(target, "&timeout_ms="...)
		target = strconv.AppendInt(target, opts.Wait.Milliseconds(), 10)
	}
	asJSON := false
	for hops := 0; ; {
		a, err := e.roundTrip(ctx, target)
		if err != nil {
			if ctxErr := lookupCtxErr(ctx); ctxErr != nil {
				return LookupResult{}, topicErr(topic, "lookup", ctxErr)
			}
			if isNetErr(err) {
				err = &unreachableError{brokers: []string{e.host}, err: err}
			}
			return LookupResult{}, topicErr(topic, "lookup", err)
		}
		switch {
		case isRedirect(a.status) && a.location != "":
			if hops++; hops > lookupMaxRedirect {
				return LookupResult{}, topicErr(topic, "lookup", fmt.Errorf("more than %d redirects", lookupMaxRedirect))
			}
			u, err := url.Parse(a.location)
			if err != nil {
				return LookupResult{}, topicErr(topic, "lookup", fmt.Errorf("redirect to %q: %w", a.location, err))
			}
			if u.Host == "" {
				u.Scheme, u.Host = "http", e.host
			}
			next, err := endpointFor(u.Scheme + "://" + u.Host)
			if err != nil {
				return LookupResult{}, topicErr(topic, "lookup", fmt.Errorf("redirect to %q: %w", a.location, err))
			}
			if !next.direct {
				if !asJSON {
					q := u.Query()
					q.Set("format", "json")
					u.RawQuery = q.Encode()
				}
				return lookupNetHTTP(ctx, http.DefaultClient, topic, u.String())
			}
			e, target = next, []byte(u.RequestURI())
			continue
		case asJSON:
			var j lookupJSON
			if err := decodeAnswer(a.status, a.body, &j); err != nil {
				return LookupResult{}, topicErr(topic, "lookup", err)
			}
			return j.result()
		case a.status == http.StatusOK && a.headerCount > 0:
			// Only JSON carries the record's headers.
			target = append(target, "&format=json"...)
			asJSON = true
			continue
		case a.status == http.StatusOK && a.partition >= 0 && a.offset >= 0 && a.stable >= 0:
			return LookupResult{Found: true, Partition: int32(a.partition), Offset: a.offset, Timestamp: time.UnixMilli(a.timestamp),
				Key: bytes.Clone(key), Value: a.body, StableOffset: a.stable}, nil
		case a.status == http.StatusNotFound && a.partition >= 0 && a.stable >= 0:
			return LookupResult{Partition: int32(a.partition), Key: bytes.Clone(key), StableOffset: a.stable}, nil
		}
		return LookupResult{}, topicErr(topic, "lookup", answerError(a.status, a.body))
	}
}

func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// LookupMany looks up many keys of topic in one request (keys:batchGet),
// results in the order of keys. A key whose partition this broker does not
// lead has a *LookupError (NOT_LEADER_OR_FOLLOWER) in errs; send those to
// the leader (or use Lookup, which follows redirects).
func LookupMany(ctx context.Context, topic string, keys [][]byte, opts LookupOptions) (results []LookupResult, errs []error, err error) {
	base, err := opts.base()
	if err != nil {
		return nil, nil, err
	}
	type reqKey struct {
		KeyB64 string `json:"key_b64"`
	}
	body := struct {
		Keys []reqKey `json:"keys"`
	}{Keys: make([]reqKey, len(keys))}
	for i, k := range keys {
		if k == nil {
			return nil, nil, ErrNilKey
		}
		body.Keys[i].KeyB64 = base64.StdEncoding.EncodeToString(k)
	}
	buf, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/topics/"+url.PathEscape(topic)+"/keys:batchGet", bytes.NewReader(buf))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	req.Header.Set("Content-Type", "application/json")
	var resp struct {
		Results []lookupJSON `json:"results"`
	}
	if err := doLookup(opts.client(), req, &resp); err != nil {
		return nil, nil, topicErr(topic, "lookup", err)
	}
	if len(resp.Results) != len(keys) {
		return nil, nil, topicErr(topic, "lookup", fmt.Errorf("%d results for %d keys", len(resp.Results), len(keys)))
	}
	results, errs = make([]LookupResult, len(keys)), make([]error, len(keys))
	for i := range resp.Results {
		j := &resp.Results[i]
		if j.Error != "" {
			errs[i] = &LookupError{Status: http.StatusOK, Code: j.Error, Message: j.Message}
			continue
		}
		results[i], errs[i] = j.result()
	}
	return results, errs, nil
}

// doLookup sends req and decodes a 200 (or the 404 of a missing key) into
// out; other answers become a *LookupError.
func doLookup(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return ctxErr
		}
		return &unreachableError{brokers: []string{req.URL.Host}, err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, lookupMaxBody))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	return decodeAnswer(resp.StatusCode, body, out)
}

// decodeAnswer decodes a JSON lookup answer: a 200 (or the 404 of a
// missing key) into out; other answers become a *LookupError.
func decodeAnswer(status int, body []byte, out any) error {
	if status == http.StatusOK || (status == http.StatusNotFound && bytes.Contains(body, []byte(`"found"`))) {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("not a lookup answer (HTTP %d): %w", status, err)
		}
		return nil
	}
	return answerError(status, body)
}

// answerError is the *LookupError of an error answer.
func answerError(status int, body []byte) error {
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return &LookupError{Status: status, Code: "UNKNOWN_SERVER_ERROR", Message: strings.TrimSpace(string(body))}
	}
	return &LookupError{Status: status, Code: e.Error, Message: e.Message}
}
