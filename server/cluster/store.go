package cluster

import (
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/controller"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/zkstore"
)

// Store is what a Member needs of ZooKeeper (*zkstore.Store in
// production): the controller's store, plus registration, the controller
// view, ISR writes, change notifications and topic znodes.
type Store interface {
	controller.Store

	RegisterBroker(b zkstore.Broker) (int64, error)
	UnregisterBroker(id int32) error
	CurrentController() (zkstore.ControllerView, error)
	HasSession() bool

	PartitionState(topic string, p int32) (zkstore.PartitionState, bool, error)
	UpdateISR(topic string, p int32, st zkstore.PartitionState) (int32, error)

	ConfigChangesW() ([]string, <-chan zk.Event, error)
	TakeConfigChange(name string) (string, error)

	Acls() (map[acl.Pattern][]acl.Entry, error)
	ResourceAcls(p acl.Pattern) ([]acl.Entry, error)
	AclChangesW(extended bool) ([]string, <-chan zk.Event, error)
	AclChange(extended bool, name string) (acl.Pattern, bool)
	PurgeAclChanges(extended bool, maxAge time.Duration)

	LiveBrokerIDs() ([]int32, error)
	Assignment(name string) (zkstore.TopicAssignment, error)
	TopicConfigs(name string) (map[string]string, error)
	CreateTopic(t metastore.Topic) error
	DeleteTopic(name string) error
	SetPartitionCount(name string, partitions int32) error
}

var _ Store = (*zkstore.Store)(nil)
