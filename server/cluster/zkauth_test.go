package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/server/config"
)

// TestZooKeeperAuthConfig: the ZooKeeper credentials come from the
// DigestLoginModule of the JAAS file's Client section (or the section
// zookeeper.sasl.clientconfig names); zookeeper.set.acl without them, or
// another login module there, is refused with a message naming the key.
func TestZooKeeperAuthConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	digest := write("digest.conf", `KafkaServer { org.apache.kafka.common.security.plain.PlainLoginModule required user_a="b"; };
Client { org.apache.zookeeper.server.auth.DigestLoginModule required username="kvlog" password="s:e:c"; };
ZkOther { org.apache.zookeeper.server.auth.DigestLoginModule required username="other" password="x"; };
`)
	krb := write("krb.conf", `Client { com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true; };`)
	for _, tc := range []struct {
		name       string
		static     map[string]string
		wantScheme string
		wantAuth   string
		wantACL    bool
		wantErr    string
	}{
		{name: "nothing", static: map[string]string{}},
		{name: "credentials without ACLs", static: map[string]string{"kvlog.sasl.jaas.file": digest}, wantScheme: "digest", wantAuth: "kvlog:s:e:c"},
		{name: "ACLs", static: map[string]string{"kvlog.sasl.jaas.file": digest, "zookeeper.set.acl": "true"}, wantScheme: "digest", wantAuth: "kvlog:s:e:c", wantACL: true},
		{name: "other section", static: map[string]string{"kvlog.sasl.jaas.file": digest, "zookeeper.sasl.clientconfig": "ZkOther"}, wantScheme: "digest", wantAuth: "other:x"},
		{name: "sasl client off", static: map[string]string{"kvlog.sasl.jaas.file": digest, "zookeeper.sasl.client": "false"}},
		{name: "ACLs without credentials", static: map[string]string{"zookeeper.set.acl": "true"}, wantErr: "zookeeper.set.acl=true needs ZooKeeper credentials"},
		{name: "ACLs with sasl client off", static: map[string]string{"kvlog.sasl.jaas.file": digest, "zookeeper.set.acl": "true", "zookeeper.sasl.client": "false"}, wantErr: "zookeeper.set.acl=true needs"},
		{name: "Kerberos", static: map[string]string{"kvlog.sasl.jaas.file": krb}, wantErr: "Krb5LoginModule is not supported for ZooKeeper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scheme, auth, setACL, err := zooKeeperAuth(config.NewLayers(tc.static, nil, nil))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || scheme != tc.wantScheme || string(auth) != tc.wantAuth || setACL != tc.wantACL {
				t.Fatalf("got %q %q %v %v, want %q %q %v", scheme, auth, setACL, err, tc.wantScheme, tc.wantAuth, tc.wantACL)
			}
		})
	}
}
