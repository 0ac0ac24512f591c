package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Header is a Kafka request header (v0, v1 or v2).
type Header struct {
	Key      int16
	Version  int16
	Corr     int32
	ClientID string // a null client id reads as ""
}

// Frame and header errors. ErrUnsupportedVersion and ErrUnknownKey carry a
// parsed header (the correlation id is needed for ApiVersions' answer).
var (
	ErrShortHeader        = errors.New("request header truncated")
	ErrUnknownKey         = errors.New("unknown or unserved API key")
	ErrUnsupportedVersion = errors.New("unsupported API version")
	ErrBadBody            = errors.New("undecodable request body")
)

// VersionRange is a served [min, max] version range of one key.
type VersionRange struct{ Min, Max int16 }

// ParseRequest parses one frame (the bytes after the size prefix): the
// request header by hand, then the body with kmsg at the header's version.
// served reports the version range served for a key (ok false: not served).
//
// Invariants (FuzzParseRequest): never panics; on success the request's key
// and version are the header's and within the served range; on
// ErrUnsupportedVersion or ErrBadBody the header is filled in.
func ParseRequest(frame []byte, served func(key int16) (VersionRange, bool)) (Header, kmsg.Request, error) {
	var h Header
	if len(frame) < 10 {
		return h, nil, ErrShortHeader
	}
	h.Key = int16(binary.BigEndian.Uint16(frame[0:]))
	h.Version = int16(binary.BigEndian.Uint16(frame[2:]))
	h.Corr = int32(binary.BigEndian.Uint32(frame[4:]))
	idLen := int16(binary.BigEndian.Uint16(frame[8:]))
	rest := frame[10:]
	if idLen >= 0 {
		if int(idLen) > len(rest) {
			return h, nil, ErrShortHeader
		}
		h.ClientID = string(rest[:idLen])
		rest = rest[idLen:]
	}
	vr, ok := served(h.Key)
	if !ok {
		return h, nil, fmt.Errorf("%w %d", ErrUnknownKey, h.Key)
	}
	req := kmsg.RequestForKey(h.Key)
	if req == nil {
		return h, nil, fmt.Errorf("%w %d", ErrUnknownKey, h.Key)
	}
	if h.Version < vr.Min || h.Version > vr.Max {
		return h, nil, fmt.Errorf("%w %d for key %d (serving %d-%d)", ErrUnsupportedVersion, h.Version, h.Key, vr.Min, vr.Max)
	}
	req.SetVersion(h.Version)
	if req.IsFlexible() {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return h, nil, err
		}
	}
	// kmsg's reads are bounded by len(rest): arrays by kbin's length
	// checks, tag sections by the patched kmsg (third_party/kmsg).
	if err := req.ReadFrom(rest); err != nil {
		return h, nil, fmt.Errorf("%w: key %d v%d: %v", ErrBadBody, h.Key, h.Version, err)
	}
	return h, req, nil
}

// skipTags skips a tagged-field section (KIP-482): a count, then per field
// a tag and a size, both unsigned varints.
func skipTags(b []byte) ([]byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return nil, ErrShortHeader
	}
	b = b[w:]
	for ; n > 0; n-- {
		_, w := binary.Uvarint(b)
		if w <= 0 {
			return nil, ErrShortHeader
		}
		b = b[w:]
		size, w := binary.Uvarint(b)
		if w <= 0 || size > uint64(len(b)-w) {
			return nil, ErrShortHeader
		}
		b = b[w+int(size):]
	}
	return b, nil
}

// AppendResponseHeader appends a size placeholder, the correlation id and,
// for flexible responses other than ApiVersions, an empty tag section.
func AppendResponseHeader(buf []byte, corr int32, resp kmsg.Response) []byte {
	buf = append(buf, 0, 0, 0, 0)
	buf = binary.BigEndian.AppendUint32(buf, uint32(corr))
	if resp.IsFlexible() && resp.Key() != kmsg.ApiVersions.Int16() {
		buf = append(buf, 0)
	}
	return buf
}

// AppendResponse appends resp as a whole frame: size prefix, response
// header for corr, body.
func AppendResponse(buf []byte, corr int32, resp kmsg.Response) []byte {
	start := len(buf)
	buf = AppendResponseHeader(buf, corr, resp)
	buf = resp.AppendTo(buf)
	binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start-4))
	return buf
}
