package cluster

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/security"
	"github.com/kvlog/kvlog/server/zkstore"
)

// Open opens the ZooKeeper metadata store for cfg, with the credentials
// and ACL setting zooKeeperAuth resolves.
func Open(cfg *config.Broker, logger *slog.Logger) (*zkstore.Store, error) {
	scheme, auth, setACL, err := zooKeeperAuth(cfg.Layers())
	if err != nil {
		return nil, err
	}
	return zkstore.Open(zkstore.Options{
		Connect: cfg.ZooKeeperConnect, SessionTimeout: cfg.ZooKeeperSessionTimeout, ConnectionTimeout: cfg.ZooKeeperConnectionTimeout,
		ClusterID: cfg.ClusterID, BrokerID: cfg.NodeID, Logger: logger,
		AuthScheme: scheme, Auth: auth, SetACL: setACL,
	})
}

// DigestLoginModule is the JAAS login module of ZooKeeper's DIGEST-MD5
// SASL client, the section a Kafka broker authenticates to ZooKeeper with.
const digestLoginModule = "org.apache.zookeeper.server.auth.DigestLoginModule"

// zooKeeperAuth resolves the ZooKeeper credentials and zookeeper.set.acl:
// the username and password of the DigestLoginModule in the
// zookeeper.sasl.clientconfig section ("Client") of kvlog.sasl.jaas.file,
// unless zookeeper.sasl.client is false. kvlog presents them with
// ZooKeeper's digest scheme (addauth digest user:password), which every
// ZooKeeper server accepts without server-side configuration; the
// identity is then digest:<user>:<hash of the password>, and the ACLs of
// the znodes kvlog creates name it. scheme is "" without credentials.
func zooKeeperAuth(l *config.Layers) (scheme string, auth []byte, setACL bool, err error) {
	setACL = l.Bool("zookeeper.set.acl")
	file := strings.TrimSpace(l.String("kvlog.sasl.jaas.file"))
	section := strings.TrimSpace(l.String("zookeeper.sasl.clientconfig"))
	if l.Bool("zookeeper.sasl.client") && file != "" {
		sections, err := security.ReadJAASFile(file)
		if err != nil {
			return "", nil, false, fmt.Errorf("config kvlog.sasl.jaas.file: %w", err)
		}
		for _, m := range sections[section] {
			if m.Class != digestLoginModule {
				return "", nil, false, fmt.Errorf("config kvlog.sasl.jaas.file: section %s: login module %s is not supported for ZooKeeper (%s with username and password is)", section, m.Class, digestLoginModule)
			}
			user, uok := m.Options["username"]
			pass, pok := m.Options["password"]
			if !uok || !pok || user == "" || strings.Contains(user, ":") {
				return "", nil, false, fmt.Errorf("config kvlog.sasl.jaas.file: section %s: %s needs a username (without ':') and a password", section, digestLoginModule)
			}
			scheme, auth = "digest", []byte(user+":"+pass)
		}
	}
	if setACL && scheme == "" {
		return "", nil, false, fmt.Errorf("config zookeeper.set.acl=true needs ZooKeeper credentials: a %s section with %s username and password in kvlog.sasl.jaas.file", section, digestLoginModule)
	}
	return scheme, auth, setACL, nil
}
