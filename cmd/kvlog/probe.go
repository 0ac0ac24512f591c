package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// probeTimeout bounds the check that a bootstrap address speaks Kafka.
const probeTimeout = 3 * time.Second

// notKafkaError is what probe reports for an address that answered, but
// not in the Kafka protocol.
type notKafkaError struct{ msg string }

func (e *notKafkaError) Error() string { return e.msg }

func notKafka(format string, args ...any) error {
	return &notKafkaError{fmt.Sprintf(format, args...)}
}

// probeKafka sends one ApiVersions v0 request to addr and checks the
// answer's framing: a Kafka broker answers with a plausible size and the
// request's correlation id. It returns nil for a Kafka answer, an error
// wrapping notKafkaError for an answer in another protocol (an HTTP server:
// the broker's --http port, say), and any other error when the address
// could not be asked (refused, no answer in time): the Kafka client then
// reports those as it always does.
func probeKafka(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	const corr = 0x6b766c67 // "kvlg"
	// The line break ends an HTTP request line, so an HTTP server answers
	// (400) at once instead of waiting for the rest of a line.
	clientID := "kvlog-probe\r\n"
	var req bytes.Buffer
	body := make([]byte, 0, 32)
	body = binary.BigEndian.AppendUint16(body, 18) // ApiVersions
	body = binary.BigEndian.AppendUint16(body, 0)  // v0
	body = binary.BigEndian.AppendUint32(body, corr)
	body = binary.BigEndian.AppendUint16(body, uint16(len(clientID)))
	body = append(body, clientID...)
	req.Write(binary.BigEndian.AppendUint32(nil, uint32(len(body))))
	req.Write(body)
	if _, err := c.Write(req.Bytes()); err != nil {
		return err
	}
	var hdr [8]byte
	n, err := io.ReadFull(c, hdr[:])
	if err != nil {
		if n > 0 {
			return notKafka("%s answered %q", addr, hdr[:n])
		}
		if errors.Is(err, io.EOF) {
			return notKafka("%s closed the connection without a Kafka answer (a TLS listener? give the profile's TLS settings)", addr)
		}
		return err // no answer in time: let the client decide
	}
	if bytes.HasPrefix(hdr[:], []byte("HTTP/")) {
		return notKafka("%s is an HTTP server (the broker's --http listener?), not its Kafka listener", addr)
	}
	if hdr[0] == 0x15 && hdr[1] == 0x03 { // a TLS alert record
		return notKafka("%s is a TLS listener: give the profile's TLS settings", addr)
	}
	size := int32(binary.BigEndian.Uint32(hdr[:4]))
	if size < 4 || size > 1<<20 || binary.BigEndian.Uint32(hdr[4:]) != corr {
		return notKafka("%s answered %q, not a Kafka response", addr, hdr[:])
	}
	return nil
}

// checkKafka probes the bootstrap addresses until one speaks Kafka. It
// fails only when every address that answered answered in another
// protocol; addresses that could not be asked are left to the client.
func checkKafka(ctx context.Context, addrs []string) error {
	var notKafka []error
	for _, addr := range addrs {
		err := probeKafka(ctx, addr)
		if err == nil {
			return nil
		}
		var nk *notKafkaError
		if errors.As(err, &nk) {
			notKafka = append(notKafka, err)
		}
	}
	if len(notKafka) == len(addrs) {
		return errors.Join(notKafka...)
	}
	return nil
}
