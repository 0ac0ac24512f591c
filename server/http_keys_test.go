package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"testing"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// TestAppendKeyResult: batchGet's hand-written JSON is byte for byte what
// encoding/json writes for the same result.
func TestAppendKeyResult(t *testing.T) {
	leader := int32(3)
	cases := []keyResult{
		resultJSON("users", 2, []byte("alice"), engine.KeyLookup{Found: true, Offset: 42, Timestamp: 1700000000000, LeaderEpoch: 7, Key: []byte("alice"), Value: []byte(`{"name":"Alice"}`), Limit: 50,
			Headers: []record.Header{{Key: []byte("trace"), Value: []byte("x")}, {Key: []byte("nil-value")}, {Key: []byte("<h&\"ü\\\n>")}}}),
		resultJSON("users", 0, []byte("bob"), engine.KeyLookup{Found: false, Limit: 9}),
		resultJSON("users", 1, []byte{0, 0xff}, engine.KeyLookup{Found: true, Value: []byte{}, Limit: 1}),
		{Topic: "users", Partition: -1, Error: "INVALID_REQUEST", Message: `keys[3]: exactly one of "key" and key_b64 <&>` + "\t\u2028é"},
		{Topic: "t.with-dots_", Partition: 4, KeyB64: "a2V5", Error: "NOT_LEADER_OR_FOLLOWER", Message: "this broker does not lead t-4", Leader: &leader},
	}
	for i := range cases {
		want, err := json.Marshal(&cases[i])
		if err != nil {
			t.Fatal(err)
		}
		if got := appendKeyResult(nil, &cases[i]); string(got) != string(want) {
			t.Fatalf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// TestParseKeyQuery: the lookup's own query parser reads what
// url.ParseQuery and Values.Get read.
func TestParseKeyQuery(t *testing.T) {
	for _, raw := range []string{
		"", "key_b64=YQ", "key_b64=YQ%3D%3D&format=json", "format=json&format=raw", "key_b64=&key_b64=YQ",
		"partition=3&min_offset=10&timeout_ms=50", "key_b64=a+b", "key_b64=%zz&key_b64=Yg", "a;b=1&format=json",
		"key%5Fb64=Yw", "&&format=json&", "format", "key_b64=YQ;x&key_b64=Yg", "timeout_ms=1%2B2",
	} {
		v, _ := url.ParseQuery(raw)
		want := keyQuery{keyB64: v.Get("key_b64"), format: v.Get("format"), partition: v.Get("partition"), minOffset: v.Get("min_offset"), timeoutMs: v.Get("timeout_ms")}
		if got := parseKeyQuery(raw); got != want {
			t.Errorf("%q: got %+v, want %+v", raw, got, want)
		}
	}
}

// TestDecodeB64: the first of standard, URL-safe, raw URL-safe and raw
// standard base64 that accepts the string, as before the guess.
func TestDecodeB64(t *testing.T) {
	chain := func(s string) ([]byte, bool) {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawURLEncoding, base64.RawStdEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				return b, true
			}
		}
		return nil, false
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var inputs []string
	for i := 0; i < 2000; i++ {
		k := make([]byte, rng.IntN(12))
		for j := range k {
			k[j] = byte(rng.IntN(256))
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawURLEncoding, base64.RawStdEncoding} {
			inputs = append(inputs, enc.EncodeToString(k))
		}
	}
	inputs = append(inputs, "", "YQ=", "YQ==\n", "Y Q", "+-", "YWJj=", "____", "++++", "a", "ab=c")
	for _, s := range inputs {
		want, ok := chain(s)
		got, err := decodeB64(s)
		if (err == nil) != ok || !bytes.Equal(got, want) {
			t.Fatalf("%q: got %x, %v; want %x, ok %v", s, got, err, want, ok)
		}
	}
}
