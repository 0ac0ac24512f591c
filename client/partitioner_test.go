package client

import (
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// javaMurmur2 holds Apache Kafka's own vectors (UtilsTest.testMurmur2): the
// values org.apache.kafka.common.utils.Utils.murmur2 returns in Java.
var javaMurmur2 = []struct {
	key  string
	hash int32
	// partitions for 3, 6, 10 and 12 partitions: (hash & 0x7fffffff) % n,
	// what Java's BuiltInPartitioner.partitionForKey returns.
	parts [4]int32
}{
	{"21", -973932308, [4]int32{0, 0, 0, 0}},
	{"foobar", -790332482, [4]int32{0, 0, 6, 6}},
	{"a-little-bit-long-string", -985981536, [4]int32{2, 2, 2, 8}},
	{"a-little-bit-longer-string", -1486304829, [4]int32{2, 5, 9, 11}},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971, [4]int32{2, 5, 7, 5}},
	{"abc", 479470107, [4]int32{0, 3, 7, 3}},
}

func TestMurmur2JavaVectors(t *testing.T) {
	for _, c := range javaMurmur2 {
		if got := Murmur2([]byte(c.key)); got != c.hash {
			t.Errorf("Murmur2(%q) = %d, Java gives %d", c.key, got, c.hash)
		}
		for i, n := range []int32{3, 6, 10, 12} {
			if got := PartitionFor([]byte(c.key), n); got != c.parts[i] {
				t.Errorf("PartitionFor(%q, %d) = %d, Java gives %d", c.key, n, got, c.parts[i])
			}
		}
	}
}

// TestPartitionForMatchesFranzGo checks PartitionFor against franz-go's
// Kafka-compatible hasher (an independent implementation) on random keys of
// every tail length, and that Partitioner() places keyed records with it.
func TestPartitionForMatchesFranzGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ref := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	ours := Partitioner().ForTopic("t")
	for i := 0; i < 5000; i++ {
		key := make([]byte, rng.IntN(40))
		for j := range key {
			key[j] = byte(rng.UintN(256))
		}
		n := 1 + rng.IntN(64)
		want := ref.Partition(&kgo.Record{Key: key}, n)
		if got := PartitionFor(key, int32(n)); int(got) != want {
			t.Fatalf("PartitionFor(%x, %d) = %d, franz-go KafkaHasher gives %d", key, n, got, want)
		}
		if got := ours.Partition(&kgo.Record{Key: key}, n); got != want {
			t.Fatalf("Partitioner().Partition(%x, %d) = %d, want %d", key, n, got, want)
		}
	}
}

func TestPartitionForRange(t *testing.T) {
	for _, key := range [][]byte{{}, {0xff}, {0x80, 0, 0, 0}, []byte("user-42")} {
		for n := int32(1); n < 100; n++ {
			if p := PartitionFor(key, n); p < 0 || p >= n {
				t.Fatalf("PartitionFor(%x, %d) = %d out of range", key, n, p)
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("PartitionFor with 0 partitions did not panic")
		}
	}()
	PartitionFor([]byte("k"), 0)
}

func BenchmarkMurmur2(b *testing.B) {
	key := []byte("user-profile-000123456")
	b.SetBytes(int64(len(key)))
	for b.Loop() {
		Murmur2(key)
	}
}
