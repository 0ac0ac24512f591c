package server

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/server/coordlog"
)

// newCoordLog is a coordinator's internal topic name (package coordlog)
// over this broker's topics and partition manager: ensure creates the
// topic on first write, timeoutKey bounds a sync, notHosted is the error
// for a partition this broker has no replica of.
func newCoordLog(s *Server, name, timeoutKey string, partitions int32, notHosted *kerr.Error, ensure func() (*topic, error)) *coordlog.Log {
	return coordlog.New(coordlog.Config{
		Topic:      name,
		Partitions: partitions,
		Lookup: func(p int32, create bool) (coordlog.Part, error) {
			t := s.topic(name)
			if t == nil {
				if !create {
					return coordlog.Part{}, nil
				}
				var err error
				if t, err = ensure(); err != nil {
					return coordlog.Part{}, err
				}
			}
			pt := coordlog.Part{Exists: true, Partitions: len(t.parts), MinInsync: int(t.settings.MinInsync)}
			if p >= 0 && int(p) < len(t.parts) && t.parts[p].log != nil {
				pt.Rep = t.parts[p].rep
			}
			return pt, nil
		},
		Replicas:   s.replicas,
		TimeoutKey: timeoutKey,
		Timeout:    func() time.Duration { return msConfig(s, timeoutKey) },
		NotHosted:  notHosted,
		Clock:      s.clock,
		Logger:     s.logger,
	})
}
