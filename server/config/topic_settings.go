package config

import (
	"github.com/kvlog/kvlog/cleaner"
	"github.com/kvlog/kvlog/engine/record"
)

// TopicSettings are the topic values the broker itself enforces (not the
// engine): min.insync.replicas, the timestamp type and the codec produced
// batches are stored in; plus the cleaner's topic-level settings.
// Resolved once per topic and configuration change (Layers.TopicSettings).
type TopicSettings struct {
	Compact       bool  // cleanup.policy includes compact
	LogAppendTime bool  // message.timestamp.type=LogAppendTime
	MinInsync     int32 // min.insync.replicas
	Cleaner       cleaner.TopicConfig
	// Recompress is set when compression.type names a codec (not
	// "producer"): produced batches in another codec are rewritten in
	// Codec.
	Recompress bool
	Codec      record.Codec
}

// TopicSettings resolves a topic's settings from its overrides and l.
func (l *Layers) TopicSettings(overrides map[string]string) TopicSettings {
	s := TopicSettings{
		LogAppendTime: l.TopicString("message.timestamp.type", overrides) == "LogAppendTime",
		MinInsync:     int32(l.TopicInt("min.insync.replicas", overrides)),
		Cleaner:       l.CleanerTopic(overrides),
	}
	s.Codec, s.Recompress = CompressionCodec(l.TopicString("compression.type", overrides))
	s.Compact, _ = l.TopicPolicy(overrides)
	return s
}

// CompressionCodec maps a compression.type value to the codec batches are
// stored in; ok is false for "producer" (the producer's codec is kept).
func CompressionCodec(v string) (c record.Codec, ok bool) {
	switch v {
	case "uncompressed":
		return record.CodecNone, true
	case "gzip":
		return record.CodecGzip, true
	case "snappy":
		return record.CodecSnappy, true
	case "lz4":
		return record.CodecLZ4, true
	case "zstd":
		return record.CodecZstd, true
	}
	return record.CodecNone, false
}
