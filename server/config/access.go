package config

import "github.com/twmb/franz-go/pkg/kmsg"

// The keys of authorization (the broker's authz.go, package acl) and of
// client quotas (the broker's quotas.go, package quota).

// AuthorizerClassNames are the authorizer.class.name values kvlog
// implements: Kafka's ACL authorizers (ZooKeeper and KRaft) and the
// pre-2.4 name of the ZooKeeper one.
var AuthorizerClassNames = map[string]bool{
	"kafka.security.authorizer.AclAuthorizer":                 true,
	"kafka.security.auth.SimpleAclAuthorizer":                 true,
	"org.apache.kafka.metadata.authorizer.StandardAuthorizer": true,
}

// authzConfigDefs are added to brokerDefs.
var authzConfigDefs = []*Def{
	{Name: "authorizer.class.name", Type: kmsg.ConfigTypeString, Default: "", Doc: "The authorizer: empty (none: every request is allowed), or Kafka's ACL authorizer, kafka.security.authorizer.AclAuthorizer or org.apache.kafka.metadata.authorizer.StandardAuthorizer (the same ACL semantics; kvlog implements both names). Any other class is refused at start-up."},
	{Name: "super.users", Type: kmsg.ConfigTypeString, NoDefault: true, Doc: "Principals allowed everything, separated by semicolons: User:admin;User:broker."},
	{Name: "allow.everyone.if.no.acl.found", Type: kmsg.ConfigTypeBoolean, Default: "false", Doc: "Whether a resource with no ACL at all is open to everyone (true) or to super users only (false)."},
}

func init() {
	for _, d := range authzConfigDefs {
		if brokerDefs[d.Name] != nil {
			panic("authorization config " + d.Name + " defined twice")
		}
		brokerDefs[d.Name] = d
	}
}

// quotaConfigDefs are added to brokerDefs.
var quotaConfigDefs = []*Def{
	{Name: "quota.window.num", Type: kmsg.ConfigTypeInt, Default: "11", Check: atLeast(2), Doc: "Samples a client quota's rate is measured over."},
	{Name: "quota.window.size.seconds", Type: kmsg.ConfigTypeInt, Default: "1", Check: atLeast(1), Doc: "Length of each sample of a client quota's rate."},
	{Name: "max.connection.creation.rate", Type: kmsg.ConfigTypeInt, Default: "2147483647", Check: atLeast(0), Dynamic: true, Doc: "New connections per second the broker accepts (all listeners): above it, accepting waits. Per IP address: the connection_creation_rate client quota (AlterClientQuotas, entity ip), whose excess connections are closed."},
}

func init() {
	for _, d := range quotaConfigDefs {
		if brokerDefs[d.Name] != nil {
			panic("quota config " + d.Name + " defined twice")
		}
		brokerDefs[d.Name] = d
	}
}
