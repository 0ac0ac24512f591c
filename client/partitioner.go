package client

import "github.com/twmb/franz-go/pkg/kgo"

// Murmur2 is the 32-bit murmur2 hash exactly as Apache Kafka's
// org.apache.kafka.common.utils.Utils.murmur2 computes it (seed 0x9747b28c),
// returned as Java's signed int.
func Murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	h := seed ^ uint32(len(data))
	n := len(data) &^ 3
	for i := 0; i < n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(data) & 3 {
	case 3:
		h ^= uint32(data[n+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[n+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[n])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// PartitionFor returns the partition Kafka's default partitioner (Java's
// BuiltInPartitioner.partitionForKey, librdkafka's murmur2_random) picks for
// a non-null key among n partitions: (murmur2(key) & 0x7fffffff) % n.
// It panics if n <= 0.
func PartitionFor(key []byte, n int32) int32 {
	if n <= 0 {
		panic("client: PartitionFor with no partitions")
	}
	return (Murmur2(key) & 0x7fffffff) % n
}

// Partitioner returns a kgo.Partitioner that places keyed records with
// PartitionFor and spreads keyless records with kgo's sticky partitioner,
// which is what Kafka's Java producer does by default.
func Partitioner() kgo.Partitioner {
	return kgo.StickyKeyPartitioner(func(key []byte, n int) int {
		return int(PartitionFor(key, int32(n)))
	})
}
