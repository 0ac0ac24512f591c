package zkstore

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/metastore"
)

// FuzzDecodeZNodes feeds the same bytes to every znode decoder, as a
// damaged or hostile ZooKeeper could: none may panic, and a decoded broker
// registration only holds endpoints a client could dial.
func FuzzDecodeZNodes(f *testing.F) {
	reg, _ := encodeBroker(Broker{ID: 1, Endpoints: []Endpoint{{Name: "PLAINTEXT", Host: "127.0.0.1", Port: 9092}, {Name: "SASL_SSL", Host: "::1", Port: 9093}}}, 1)
	f.Add(reg)
	asg, _ := encodeAssignment(metastore.TopicID{1, 2, 3}, [][]int32{{1, 2, 3}, {2, 3, 1}})
	f.Add(asg)
	st, _ := encodeState(PartitionState{Leader: 1, LeaderEpoch: 4, ISR: []int32{1, 2}, ControllerEpoch: 2})
	f.Add(st)
	cfg, _ := encodeConfig(map[string]string{"cleanup.policy": "compact"})
	f.Add(cfg)
	f.Add(encodeACLEntries([]acl.Entry{{Principal: "User:alice", Host: "*", Operation: kmsg.ACLOperationRead, Permission: kmsg.ACLPermissionTypeAllow}}))
	f.Add([]byte(`{"version":5,"host":"h","port":99999,"endpoints":["PLAINTEXT://h:70000","x://h:-1","nocolon"]}`))
	f.Add([]byte(`{"version":3,"partitions":{"0":[1],"2":[1]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := decodeBroker(1, data); err == nil {
			for _, e := range b.Endpoints {
				if e.Port < 0 || e.Port > 65535 {
					t.Fatalf("decoded endpoint %v with port out of range", e)
				}
			}
		}
		if a, err := decodeAssignment("t", data); err == nil {
			for p, rs := range a.Replicas {
				if rs == nil && p < 0 {
					t.Fatal("unreachable")
				}
			}
		}
		_, _ = decodeState(data, 0)
		_, _ = decodeConfig(data)
		_, _ = decodeACLEntries(data)
		_, _ = decodeTopicID(string(data))
	})
}

// FuzzZNodeRoundTrip: what kvlog writes to ZooKeeper reads back the same.
func FuzzZNodeRoundTrip(f *testing.F) {
	f.Add("PLAINTEXT", "127.0.0.1", uint16(9092), int32(3), int32(7), "cleanup.policy", "compact", "User:CN=a,O=b", "*")
	f.Add("INTERNAL", "::1", uint16(0), int32(0), int32(-1), "", "", "", "")
	f.Fuzz(func(t *testing.T, listener, host string, port uint16, leader, epoch int32, key, value, principal, aclHost string) {
		for _, s := range []string{listener, host, key, value, principal, aclHost} {
			if !utf8.ValidString(s) {
				return // JSON replaces invalid UTF-8: not something kvlog writes
			}
		}
		if listener != "" && !strings.Contains(listener, "://") && !strings.ContainsAny(host, "[]") {
			in := Broker{ID: 1, Endpoints: []Endpoint{{Name: listener, Host: host, Port: int32(port)}}, Protocols: map[string]string{listener: "SSL"}}
			data, err := encodeBroker(in, 5)
			if err != nil {
				t.Fatal(err)
			}
			out, err := decodeBroker(1, data)
			if err != nil || len(out.Endpoints) != 1 || out.Endpoints[0] != in.Endpoints[0] || out.Protocols[listener] != "SSL" {
				t.Fatalf("broker %+v read back as %+v (%v)", in, out, err)
			}
		}
		replicas := [][]int32{{leader, epoch}, {epoch}}
		id := metastore.TopicID{byte(port), byte(port >> 8), 1}
		data, err := encodeAssignment(id, replicas)
		if err != nil {
			t.Fatal(err)
		}
		a, err := decodeAssignment("t", data)
		if err != nil || a.ID != id || len(a.Replicas) != 2 || !slices.Equal(a.Replicas[0], replicas[0]) || !slices.Equal(a.Replicas[1], replicas[1]) {
			t.Fatalf("assignment %v read back as %+v (%v)", replicas, a, err)
		}
		st := PartitionState{Leader: leader, LeaderEpoch: epoch, ISR: []int32{leader}, ControllerEpoch: epoch}
		data, err = encodeState(st)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeState(data, 9)
		if err != nil || got.Leader != leader || got.LeaderEpoch != epoch || !slices.Equal(got.ISR, st.ISR) || got.ControllerEpoch != epoch || got.ZkVersion != 9 {
			t.Fatalf("state %+v read back as %+v (%v)", st, got, err)
		}
		cfg := map[string]string{key: value}
		data, err = encodeConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := decodeConfig(data); err != nil || !maps.Equal(back, cfg) {
			t.Fatalf("config %q read back as %q (%v)", cfg, back, err)
		}
		es := []acl.Entry{{Principal: principal, Host: aclHost, Operation: kmsg.ACLOperationWrite, Permission: kmsg.ACLPermissionTypeDeny}}
		if back, err := decodeACLEntries(encodeACLEntries(es)); err != nil || len(back) != 1 || back[0] != es[0] {
			t.Fatalf("acl %+v read back as %+v (%v)", es, back, err)
		}
	})
}
