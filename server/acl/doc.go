// Package acl is the broker's authorizer: Apache Kafka's ACL model
// (AclAuthorizer, StandardAuthorizer) with no dependency on the rest of the
// broker.
//
// An ACL binds a resource pattern — a resource type (TOPIC, GROUP, CLUSTER,
// TRANSACTIONAL_ID), a name and a pattern type (LITERAL, or PREFIXED: every
// name starting with it; the LITERAL name "*" is every name) — to an entry:
// a principal ("User:alice", or "User:*" for every principal), a host (a
// client IP address, or "*"), an operation and ALLOW or DENY.
//
// A request by principal P from host H for operation O on resource
// (type T, name N) is decided as Kafka decides it:
//
//  1. P in super.users: allowed.
//  2. The ACLs of the resource are those whose pattern matches N: LITERAL
//     N, LITERAL "*", and PREFIXED patterns N starts with. Of these, an
//     ACL applies when its principal is P or User:*, its host is H or *,
//     and its operation is O or ALL — or, for ALLOW ACLs only, an
//     operation implying O: READ, WRITE, DELETE and ALTER imply DESCRIBE;
//     ALTER_CONFIGS implies DESCRIBE_CONFIGS. (A DENY READ does not deny
//     DESCRIBE.)
//  3. Any applying DENY: denied. Else any applying ALLOW: allowed.
//  4. Else, if the resource has no ACLs at all (for any principal, host or
//     operation): allow.everyone.if.no.acl.found decides (default false,
//     denied). Otherwise denied.
//
// The ACLs are held in an immutable index replaced whole on every change
// (copy on write), so a check takes no lock. Finding a resource's ACLs
// costs one map lookup for the literal name, one for "*", and one per
// distinct PREFIXED pattern length of that resource type — never a scan of
// the ACLs (BenchmarkAuthorize measures it at 10,000 ACLs).
package acl
