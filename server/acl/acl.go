package acl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Resource types, pattern types, operations and permissions are Kafka's
// wire values (kmsg's types).
type (
	ResourceType = kmsg.ACLResourceType
	PatternType  = kmsg.ACLResourcePatternType
	Operation    = kmsg.ACLOperation
	Permission   = kmsg.ACLPermissionType
)

// Wildcards and the cluster resource's only name.
const (
	WildcardResource  = "*"
	WildcardPrincipal = "User:*"
	WildcardHost      = "*"
	ClusterName       = "kafka-cluster"
)

// Pattern is a resource pattern: a type, a name and LITERAL or PREFIXED.
type Pattern struct {
	Type        ResourceType
	Name        string
	PatternType PatternType
}

func (p Pattern) String() string {
	return ResourceTypeName(p.Type) + ":" + PatternTypeName(p.PatternType) + ":" + p.Name
}

// Entry is what an ACL grants or denies on its pattern.
type Entry struct {
	Principal  string
	Host       string
	Operation  Operation
	Permission Permission
}

func (e Entry) String() string {
	return fmt.Sprintf("%s has %s permission for operation %s from host %s", e.Principal, PermissionName(e.Permission), OperationName(e.Operation), e.Host)
}

// Binding is one ACL.
type Binding struct {
	Pattern Pattern
	Entry   Entry
}

// Filter selects bindings (DescribeAcls, DeleteAcls): ANY types,
// operations and permissions and nil strings match everything; pattern
// type MATCH selects the patterns that apply to the named resource
// (LITERAL name, LITERAL "*", PREFIXED prefixes of it).
type Filter struct {
	Type        ResourceType
	Name        *string
	PatternType PatternType
	Principal   *string
	Host        *string
	Operation   Operation
	Permission  Permission
}

// Matches reports whether f selects b (Kafka's AclBindingFilter.matches).
func (f Filter) Matches(b Binding) bool {
	return f.matchesPattern(b.Pattern) && f.matchesEntry(b.Entry)
}

func (f Filter) matchesPattern(p Pattern) bool {
	if f.Type != kmsg.ACLResourceTypeAny && f.Type != p.Type {
		return false
	}
	switch f.PatternType {
	case kmsg.ACLResourcePatternTypeAny, kmsg.ACLResourcePatternTypeMatch:
	default:
		if f.PatternType != p.PatternType {
			return false
		}
	}
	if f.Name == nil {
		return true
	}
	if f.PatternType != kmsg.ACLResourcePatternTypeMatch {
		return *f.Name == p.Name
	}
	switch p.PatternType {
	case kmsg.ACLResourcePatternTypeLiteral:
		return *f.Name == p.Name || p.Name == WildcardResource
	case kmsg.ACLResourcePatternTypePrefixed:
		return strings.HasPrefix(*f.Name, p.Name)
	}
	return false
}

func (f Filter) matchesEntry(e Entry) bool {
	return (f.Principal == nil || *f.Principal == e.Principal) &&
		(f.Host == nil || *f.Host == e.Host) &&
		(f.Operation == kmsg.ACLOperationAny || f.Operation == e.Operation) &&
		(f.Permission == kmsg.ACLPermissionTypeAny || f.Permission == e.Permission)
}

// ErrInvalid marks a binding or filter that is not well formed
// (INVALID_REQUEST).
var ErrInvalid = errors.New("invalid ACL")

// ValidateFilter checks a filter has no UNKNOWN element.
func ValidateFilter(f Filter) error {
	switch {
	case f.Type == kmsg.ACLResourceTypeUnknown || f.Type > kmsg.ACLResourceTypeUser:
		return fmt.Errorf("%w: unknown resource type %d", ErrInvalid, f.Type)
	case f.PatternType == kmsg.ACLResourcePatternTypeUnknown || f.PatternType > kmsg.ACLResourcePatternTypePrefixed:
		return fmt.Errorf("%w: unknown pattern type %d", ErrInvalid, f.PatternType)
	case f.Operation == kmsg.ACLOperationUnknown || f.Operation > kmsg.ACLOperationDescribeTokens:
		return fmt.Errorf("%w: unknown operation %d", ErrInvalid, f.Operation)
	case f.Permission == kmsg.ACLPermissionTypeUnknown || f.Permission > kmsg.ACLPermissionTypeAllow:
		return fmt.Errorf("%w: unknown permission type %d", ErrInvalid, f.Permission)
	}
	return nil
}

// ValidateBinding checks a binding to create, as Kafka's authorizers do:
// concrete values only (no ANY, MATCH or UNKNOWN), LITERAL or PREFIXED, a
// non-empty name without '/', "kafka-cluster" for the cluster, a principal
// of the form Type:name and a host. Delegation-token and user resources
// are refused: kvlog has no delegation tokens.
func ValidateBinding(b Binding) error {
	p, e := b.Pattern, b.Entry
	switch p.Type {
	case kmsg.ACLResourceTypeTopic, kmsg.ACLResourceTypeGroup, kmsg.ACLResourceTypeCluster, kmsg.ACLResourceTypeTransactionalId:
	case kmsg.ACLResourceTypeDelegationToken, kmsg.ACLResourceTypeUser:
		return fmt.Errorf("%w: resource type %s: delegation tokens are not implemented", ErrInvalid, ResourceTypeName(p.Type))
	default:
		return fmt.Errorf("%w: resource type %d", ErrInvalid, p.Type)
	}
	switch {
	case p.PatternType != kmsg.ACLResourcePatternTypeLiteral && p.PatternType != kmsg.ACLResourcePatternTypePrefixed:
		return fmt.Errorf("%w: pattern type must be LITERAL or PREFIXED, got %s", ErrInvalid, p.PatternType)
	case p.Name == "":
		return fmt.Errorf("%w: empty resource name", ErrInvalid)
	case strings.Contains(p.Name, "/"):
		return fmt.Errorf("%w: resource name %q contains '/'", ErrInvalid, p.Name)
	case p.Type == kmsg.ACLResourceTypeCluster && p.Name != ClusterName:
		return fmt.Errorf("%w: the only valid name for the CLUSTER resource is %s", ErrInvalid, ClusterName)
	case e.Operation <= kmsg.ACLOperationAny || e.Operation > kmsg.ACLOperationDescribeTokens:
		return fmt.Errorf("%w: operation %s", ErrInvalid, e.Operation)
	case e.Permission != kmsg.ACLPermissionTypeAllow && e.Permission != kmsg.ACLPermissionTypeDeny:
		return fmt.Errorf("%w: permission type %s", ErrInvalid, e.Permission)
	case e.Host == "":
		return fmt.Errorf("%w: empty host", ErrInvalid)
	}
	if typ, name, ok := strings.Cut(e.Principal, ":"); !ok || typ == "" || name == "" {
		return fmt.Errorf("%w: principal %q is not of the form Type:name", ErrInvalid, e.Principal)
	}
	return nil
}

// The names Kafka writes in ZooKeeper and logs (SecurityUtils): Pascal
// case of the enum names.
var (
	resourceTypeNames = map[ResourceType]string{
		kmsg.ACLResourceTypeTopic: "Topic", kmsg.ACLResourceTypeGroup: "Group", kmsg.ACLResourceTypeCluster: "Cluster",
		kmsg.ACLResourceTypeTransactionalId: "TransactionalId", kmsg.ACLResourceTypeDelegationToken: "DelegationToken",
		kmsg.ACLResourceTypeUser: "User",
	}
	operationNames = map[Operation]string{
		kmsg.ACLOperationAll: "All", kmsg.ACLOperationRead: "Read", kmsg.ACLOperationWrite: "Write",
		kmsg.ACLOperationCreate: "Create", kmsg.ACLOperationDelete: "Delete", kmsg.ACLOperationAlter: "Alter",
		kmsg.ACLOperationDescribe: "Describe", kmsg.ACLOperationClusterAction: "ClusterAction",
		kmsg.ACLOperationDescribeConfigs: "DescribeConfigs", kmsg.ACLOperationAlterConfigs: "AlterConfigs",
		kmsg.ACLOperationIdempotentWrite: "IdempotentWrite", kmsg.ACLOperationCreateTokens: "CreateTokens",
		kmsg.ACLOperationDescribeTokens: "DescribeTokens",
	}
	permissionNames = map[Permission]string{kmsg.ACLPermissionTypeAllow: "Allow", kmsg.ACLPermissionTypeDeny: "Deny"}
)

// ResourceTypeName is Kafka's name of a resource type ("Topic").
func ResourceTypeName(t ResourceType) string { return nameOr(resourceTypeNames, t) }

// OperationName is Kafka's name of an operation ("DescribeConfigs").
func OperationName(o Operation) string { return nameOr(operationNames, o) }

// PermissionName is Kafka's name of a permission type ("Allow").
func PermissionName(p Permission) string { return nameOr(permissionNames, p) }

// PatternTypeName is LITERAL or PREFIXED.
func PatternTypeName(p PatternType) string { return strings.ToUpper(p.String()) }

func nameOr[K ~int8](m map[K]string, k K) string {
	if n, ok := m[k]; ok {
		return n
	}
	return fmt.Sprintf("Unknown(%d)", k)
}

func parseName[K ~int8](m map[K]string, s string) (K, bool) {
	for k, n := range m {
		if strings.EqualFold(n, s) || strings.EqualFold(strings.ReplaceAll(n, "_", ""), strings.ReplaceAll(s, "_", "")) {
			return k, true
		}
	}
	return 0, false
}

// ParseResourceType parses Kafka's name of a resource type ("Topic",
// case-insensitive, underscores ignored: "TRANSACTIONAL_ID").
func ParseResourceType(s string) (ResourceType, bool) { return parseName(resourceTypeNames, s) }

// ParseOperation parses Kafka's name of an operation.
func ParseOperation(s string) (Operation, bool) { return parseName(operationNames, s) }

// ParsePermission parses Allow or Deny.
func ParsePermission(s string) (Permission, bool) { return parseName(permissionNames, s) }

// SupportedOperations are the operations Kafka defines for a resource type
// (AclEntry.supportedOperations): the bits of authorized-operations fields.
func SupportedOperations(t ResourceType) []Operation {
	switch t {
	case kmsg.ACLResourceTypeTopic:
		return []Operation{kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate, kmsg.ACLOperationDescribe,
			kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs}
	case kmsg.ACLResourceTypeGroup:
		return []Operation{kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationDelete}
	case kmsg.ACLResourceTypeCluster:
		return []Operation{kmsg.ACLOperationCreate, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs,
			kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe}
	case kmsg.ACLResourceTypeTransactionalId:
		return []Operation{kmsg.ACLOperationDescribe, kmsg.ACLOperationWrite}
	}
	return nil
}
