package config

import "testing"

// TestZooKeeperSecurityKeys: zookeeper.set.acl and the zookeeper.sasl keys
// kvlog reads are accepted at start-up; TLS to ZooKeeper is not.
func TestZooKeeperSecurityKeys(t *testing.T) {
	for k, refused := range map[string]bool{"zookeeper.set.acl": false, "zookeeper.sasl.client": false, "zookeeper.sasl.clientconfig": false,
		"zookeeper.ssl.client.enable": true, "zookeeper.sasl.client.username": true} {
		if got := refusedSecurity(k, "true") != ""; got != refused {
			t.Errorf("%s=true refused: %v, want %v", k, got, refused)
		}
	}
}
