package server

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// requestHeader is a Kafka request header (v0, v1 or v2).
type requestHeader struct {
	key      int16
	version  int16
	corr     int32
	clientID string // a null client id reads as ""
}

// Frame and header errors. errUnsupportedVersion and errUnknownKey carry a
// parsed header (the correlation id is needed for ApiVersions' answer).
var (
	errShortHeader        = errors.New("request header truncated")
	errUnknownKey         = errors.New("unknown or unserved API key")
	errUnsupportedVersion = errors.New("unsupported API version")
	errBadBody            = errors.New("undecodable request body")
)

// versionRange is a served [min, max] version range of one key.
type versionRange struct{ min, max int16 }

// parseRequest parses one frame (the bytes after the size prefix): the
// request header by hand, then the body with kmsg at the header's version.
// served reports the version range served for a key (ok false: not served).
//
// Invariants (FuzzParseRequest): never panics; on success the request's key
// and version are the header's and within the served range; on
// errUnsupportedVersion or errBadBody the header is filled in.
func parseRequest(frame []byte, served func(key int16) (versionRange, bool)) (requestHeader, kmsg.Request, error) {
	var h requestHeader
	if len(frame) < 10 {
		return h, nil, errShortHeader
	}
	h.key = int16(binary.BigEndian.Uint16(frame[0:]))
	h.version = int16(binary.BigEndian.Uint16(frame[2:]))
	h.corr = int32(binary.BigEndian.Uint32(frame[4:]))
	idLen := int16(binary.BigEndian.Uint16(frame[8:]))
	rest := frame[10:]
	if idLen >= 0 {
		if int(idLen) > len(rest) {
			return h, nil, errShortHeader
		}
		h.clientID = string(rest[:idLen])
		rest = rest[idLen:]
	}
	vr, ok := served(h.key)
	if !ok {
		return h, nil, fmt.Errorf("%w %d", errUnknownKey, h.key)
	}
	req := kmsg.RequestForKey(h.key)
	if req == nil {
		return h, nil, fmt.Errorf("%w %d", errUnknownKey, h.key)
	}
	if h.version < vr.min || h.version > vr.max {
		return h, nil, fmt.Errorf("%w %d for key %d (serving %d-%d)", errUnsupportedVersion, h.version, h.key, vr.min, vr.max)
	}
	req.SetVersion(h.version)
	if req.IsFlexible() {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return h, nil, err
		}
	}
	// kmsg's reads are bounded by len(rest): arrays by kbin's length
	// checks, tag sections by the patched kmsg (third_party/kmsg).
	if err := req.ReadFrom(rest); err != nil {
		return h, nil, fmt.Errorf("%w: key %d v%d: %v", errBadBody, h.key, h.version, err)
	}
	return h, req, nil
}

// skipTags skips a tagged-field section (KIP-482): a count, then per field
// a tag and a size, both unsigned varints.
func skipTags(b []byte) ([]byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return nil, errShortHeader
	}
	b = b[w:]
	for ; n > 0; n-- {
		_, w := binary.Uvarint(b)
		if w <= 0 {
			return nil, errShortHeader
		}
		b = b[w:]
		size, w := binary.Uvarint(b)
		if w <= 0 || size > uint64(len(b)-w) {
			return nil, errShortHeader
		}
		b = b[w+int(size):]
	}
	return b, nil
}
