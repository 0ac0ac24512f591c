package record

// Recompress appends to dst a copy of b whose records section is encoded
// with codec c, as a Kafka leader rewrites a produced batch when the topic's
// compression.type names a codec other than the producer's. Every record is
// kept with its offset delta, timestamp delta, key, value and headers; the
// header keeps the base offset, partition leader epoch, every attribute but
// the codec bits, LastOffsetDelta, the base timestamp, the producer id,
// epoch and base sequence (so idempotence and transactions see the batch
// the producer sent). MaxTimestamp is kept for LogAppendTime batches and
// recomputed from the records otherwise; CRC and length are recomputed.
// d decodes b (its buffers are reused); bl is reset and left holding b's
// records. Errors wrap the package sentinels: b is malformed or fails its
// CRC, a codec is unknown, or the decompressed records exceed d's limit.
func Recompress(dst []byte, b Batch, c Codec, d *Decoder, bl *Builder) ([]byte, error) {
	if !c.Valid() {
		return dst, ErrUnsupportedCodec
	}
	if err := b.checkFraming(); err != nil {
		return dst, err
	}
	if err := b.VerifyCRC(); err != nil {
		return dst, err // never give damaged bytes a fresh CRC
	}
	bl.Reset()
	bl.HeaderFrom(b)
	bl.Attributes = bl.Attributes&^AttrCodecMask | int16(c)
	if err := d.Records(b, func(r *Record) error {
		bl.Add(*r)
		return nil
	}); err != nil {
		return dst, err
	}
	return bl.Build(dst)
}
