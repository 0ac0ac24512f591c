package record

import (
	"encoding/binary"
	"math/bits"
)

// Kafka's record fields use zigzag varints ("varint" for int32, "varlong"
// for int64), the same encoding as protobuf's sint32/sint64 and as
// encoding/binary's AppendVarint/Varint: zigzag maps n to (n << 1) ^ (n >> 63)
// and the result is written 7 bits at a time, least significant group
// first, high bit set on every byte but the last. For values in the int32
// range, the 64-bit zigzag produces exactly the bytes of Kafka's 32-bit
// writeVarint, so one encoder serves both. TestVarintKafkaVectors pins this.
//
// Decoding is stricter than encoding/binary: a varint must fit in 5 bytes and
// in 32 bits (the 5th byte must be <= 0x0f), a varlong in 10 bytes and 64 bits
// (the 10th byte must be <= 0x01). Kafka's writers never produce anything
// else.

// appendVarint appends the zigzag varint encoding of v.
func appendVarint(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }

// sizeVarint is the encoded size of v as a zigzag varint/varlong.
func sizeVarint(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	return (bits.Len64(u|1) + 6) / 7
}

// readVarint decodes a zigzag varint (int32) at b[i:]. It returns the value
// and the index after it, or next < 0 if the input is truncated, longer than
// 5 bytes or overflows 32 bits.
func readVarint(b []byte, i int) (v int32, next int) {
	var x uint32
	for s := uint(0); ; s += 7 {
		if i >= len(b) {
			return 0, -1
		}
		c := b[i]
		i++
		if s == 28 {
			if c > 0x0f {
				return 0, -1
			}
			x |= uint32(c) << 28
			break
		}
		x |= uint32(c&0x7f) << s
		if c < 0x80 {
			break
		}
	}
	return int32(x>>1) ^ -int32(x&1), i
}

// readVarlong decodes a zigzag varlong (int64) at b[i:]. It returns the
// value and the index after it, or next < 0 if the input is truncated,
// longer than 10 bytes or overflows 64 bits.
func readVarlong(b []byte, i int) (v int64, next int) {
	var x uint64
	for s := uint(0); ; s += 7 {
		if i >= len(b) {
			return 0, -1
		}
		c := b[i]
		i++
		if s == 63 {
			if c > 0x01 {
				return 0, -1
			}
			x |= uint64(c) << 63
			break
		}
		x |= uint64(c&0x7f) << s
		if c < 0x80 {
			break
		}
	}
	return int64(x>>1) ^ -int64(x&1), i
}
