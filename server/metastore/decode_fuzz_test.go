package metastore

import (
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// sealed wraps body as a current-format generation with a correct checksum,
// so the fuzzer reaches the state decoder instead of stopping at the CRC.
func sealed(body []byte) []byte {
	out := []byte(`{"version": 2, "generation": 7, "crc32c": `)
	out = append(out, []byte(itoa(crc32.Checksum(body, castagnoli)))...)
	out = append(out, []byte(",\n\"state\": ")...)
	out = append(out, body...)
	return append(out, '}', '\n')
}

func itoa(v uint32) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

var discard = slog.New(slog.DiscardHandler)

// FuzzOpenLocal: a damaged or hand-edited metadata file, as a whole file
// and as the state inside a generation with a correct checksum, never
// panics the store: it opens (and then answers every read, takes a change
// and reopens to the same state) or fails with an error.
func FuzzOpenLocal(f *testing.F) {
	st := localState{ClusterID: "c", Topics: map[string]*Topic{"t": {Name: "t", Partitions: 3, ReplicationFactor: 1, Configs: map[string]string{"cleanup.policy": "compact"}}}}
	good, err := encode(&st, 3)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, false)
	f.Add([]byte(`{"cluster_id":"c","topics":{"t":null}}`), true)
	f.Add([]byte(`{"cluster_id":"c","topics":{"t":{"name":"u","partitions":-1}},"acls":[{"resource_type":"TOPIC","name":"*","pattern_type":"LITERAL","acls":[{"principal":"User:a","host":"*","operation":"READ","permission_type":"ALLOW"}]}]}`), true)
	f.Add([]byte(`{"version":1,"cluster_id":"c","topics":{}}`), false)
	f.Fuzz(func(t *testing.T, data []byte, wrap bool) {
		if wrap {
			data = sealed(data)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, LocalFileName), data, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := OpenLocalWith(dir, "fresh", LocalOptions{Logger: discard})
		if err != nil {
			return
		}
		_ = l.ClusterID()
		_ = l.Topics()
		_ = l.PendingDeletions()
		_ = l.BrokerConfigs("1")
		_, _ = l.ScramUsers()
		_, _ = l.Acls()
		_, _ = l.ClientQuotas()
		if err := l.CreateTopic(Topic{Name: "fuzz-new", Partitions: 1, ReplicationFactor: 1}); err != nil && err != ErrTopicExists {
			t.Fatalf("create after an accepted open: %v", err)
		}
		want := l.Topics()
		l.Close()
		l2, err := OpenLocalWith(dir, "", LocalOptions{Logger: discard})
		if err != nil {
			t.Fatalf("reopening what the store itself wrote: %v", err)
		}
		defer l2.Close()
		if got := l2.Topics(); !reflect.DeepEqual(got, want) {
			t.Fatalf("reopened topics %+v, want %+v", got, want)
		}
	})
}
