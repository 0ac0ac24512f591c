package server

import (
	"encoding/json"
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
