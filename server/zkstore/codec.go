package zkstore

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/kvlog/kvlog/server/metastore"
)

// Kafka's ZooKeeper-era znodes (kafka.zk.ZkData), relative to the chroot.
const (
	pathBrokers        = "/brokers"
	pathBrokerIDs      = "/brokers/ids"
	pathTopics         = "/brokers/topics"
	pathSeqID          = "/brokers/seqid"
	pathController     = "/controller"
	pathControllerEpoc = "/controller_epoch"
	pathConfig         = "/config"
	pathConfigTopics   = "/config/topics"
	pathConfigBrokers  = "/config/brokers"
	pathConfigUsers    = "/config/users"
	pathConfigChanges  = "/config/changes"
	pathAdmin          = "/admin"
	pathDeleteTopics   = "/admin/delete_topics"
	pathISRChanges     = "/isr_change_notification"
	pathProducerIDs    = "/latest_producer_id_block"
	pathCluster        = "/cluster"
	pathClusterID      = "/cluster/id"

	configChangePrefix = "config_change_"
	isrChangePrefix    = "isr_change_"
	// defaultBrokerEntity is Kafka's entity name for cluster-wide dynamic
	// broker configs.
	defaultBrokerEntity = "<default>"
)

func brokerPath(id int32) string     { return pathBrokerIDs + "/" + strconv.Itoa(int(id)) }
func topicPath(t string) string      { return pathTopics + "/" + t }
func partitionsPath(t string) string { return topicPath(t) + "/partitions" }
func partitionPath(t string, p int32) string {
	return partitionsPath(t) + "/" + strconv.Itoa(int(p))
}
func statePath(t string, p int32) string { return partitionPath(t, p) + "/state" }
func topicConfigPath(t string) string    { return pathConfigTopics + "/" + t }
func deleteTopicPath(t string) string    { return pathDeleteTopics + "/" + t }

// Endpoint is one advertised listener.
type Endpoint struct {
	Name string
	Host string
	Port int32
}

func (e Endpoint) String() string {
	return e.Name + "://" + net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
}

// Broker is a live broker's registration.
type Broker struct {
	ID        int32
	Endpoints []Endpoint
	// Protocols maps listener names to security protocols
	// (listener_security_protocol_map); a name missing is PLAINTEXT.
	Protocols map[string]string
	Rack      *string
	// Epoch is the czxid of the registration znode (KIP-380): a restarted
	// broker registers again and gets a larger one.
	Epoch int64
}

// Endpoint returns the endpoint for listener name (the first when name is
// "" or not found).
func (b Broker) Endpoint(name string) (Endpoint, bool) {
	for _, e := range b.Endpoints {
		if e.Name == name {
			return e, true
		}
	}
	if len(b.Endpoints) > 0 {
		return b.Endpoints[0], true
	}
	return Endpoint{}, false
}

// brokerJSON is /brokers/ids/<id> version 5.
type brokerJSON struct {
	Version      int               `json:"version"`
	Host         string            `json:"host"`
	Port         int32             `json:"port"`
	Endpoints    []string          `json:"endpoints"`
	ProtocolMap  map[string]string `json:"listener_security_protocol_map"`
	JMXPort      int               `json:"jmx_port"`
	Timestamp    string            `json:"timestamp"`
	Rack         *string           `json:"rack,omitempty"`
	Features     map[string]any    `json:"features"`
	KvlogVersion string            `json:"kvlog_version,omitempty"`
}

func encodeBroker(b Broker, nowMs int64) ([]byte, error) {
	j := brokerJSON{Version: 5, Port: -1, JMXPort: -1, Timestamp: strconv.FormatInt(nowMs, 10),
		ProtocolMap: map[string]string{}, Features: map[string]any{}, Rack: b.Rack, KvlogVersion: "1"}
	for _, e := range b.Endpoints {
		j.Endpoints = append(j.Endpoints, e.String())
		j.ProtocolMap[e.Name] = "PLAINTEXT"
		if p := b.Protocols[e.Name]; p != "" {
			j.ProtocolMap[e.Name] = p
		}
		if j.Port == -1 {
			j.Host, j.Port = e.Host, e.Port
		}
	}
	return json.Marshal(j)
}

func decodeBroker(id int32, data []byte) (Broker, error) {
	var j brokerJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return Broker{}, fmt.Errorf("zkstore: broker %d registration: %w", id, err)
	}
	b := Broker{ID: id, Rack: j.Rack, Protocols: j.ProtocolMap}
	for _, s := range j.Endpoints {
		name, hostport, ok := strings.Cut(s, "://")
		if !ok {
			continue
		}
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			continue
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			continue // not an endpoint a client could dial
		}
		b.Endpoints = append(b.Endpoints, Endpoint{Name: name, Host: host, Port: int32(p)})
	}
	if len(b.Endpoints) == 0 && j.Host != "" && j.Port >= 0 && j.Port <= 65535 {
		b.Endpoints = []Endpoint{{Name: "PLAINTEXT", Host: j.Host, Port: j.Port}}
	}
	return b, nil
}

// topicJSON is /brokers/topics/<t>.
type topicJSON struct {
	Version          int                `json:"version"`
	TopicID          string             `json:"topic_id,omitempty"`
	Partitions       map[string][]int32 `json:"partitions"`
	AddingReplicas   map[string][]int32 `json:"adding_replicas"`
	RemovingReplicas map[string][]int32 `json:"removing_replicas"`
}

// TopicAssignment is a topic's replica assignment.
type TopicAssignment struct {
	Name     string
	ID       metastore.TopicID
	Replicas [][]int32 // by partition
	Version  int32     // znode version
}

func encodeTopicID(id metastore.TopicID) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

func decodeTopicID(s string) (metastore.TopicID, error) {
	var id metastore.TopicID
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("zkstore: bad topic id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

func encodeAssignment(id metastore.TopicID, replicas [][]int32) ([]byte, error) {
	j := topicJSON{Version: 3, TopicID: encodeTopicID(id), Partitions: map[string][]int32{},
		AddingReplicas: map[string][]int32{}, RemovingReplicas: map[string][]int32{}}
	for p, rs := range replicas {
		j.Partitions[strconv.Itoa(p)] = rs
	}
	return json.Marshal(j)
}

func decodeAssignment(name string, data []byte) (TopicAssignment, error) {
	var j topicJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return TopicAssignment{}, fmt.Errorf("zkstore: topic %s assignment: %w", name, err)
	}
	a := TopicAssignment{Name: name}
	if j.TopicID != "" {
		id, err := decodeTopicID(j.TopicID)
		if err != nil {
			return a, err
		}
		a.ID = id
	}
	keys := make([]int, 0, len(j.Partitions))
	for k := range j.Partitions {
		p, err := strconv.Atoi(k)
		if err != nil || p < 0 {
			return a, fmt.Errorf("zkstore: topic %s: bad partition %q", name, k)
		}
		keys = append(keys, p)
	}
	sort.Ints(keys)
	for i, p := range keys {
		if p != i {
			return a, fmt.Errorf("zkstore: topic %s: partitions not contiguous", name)
		}
		a.Replicas = append(a.Replicas, j.Partitions[strconv.Itoa(p)])
	}
	return a, nil
}

// PartitionState is /brokers/topics/<t>/partitions/<p>/state.
type PartitionState struct {
	Leader          int32   `json:"leader"`
	LeaderEpoch     int32   `json:"leader_epoch"`
	ISR             []int32 `json:"isr"`
	ControllerEpoch int32   `json:"controller_epoch"`
	Version         int     `json:"version"`
	// ZkVersion is the znode version (not in the JSON).
	ZkVersion int32 `json:"-"`
}

func encodeState(s PartitionState) ([]byte, error) {
	s.Version = 1
	if s.ISR == nil {
		s.ISR = []int32{}
	}
	return json.Marshal(s)
}

func decodeState(data []byte, zkVersion int32) (PartitionState, error) {
	var s PartitionState
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("zkstore: partition state: %w", err)
	}
	s.ZkVersion = zkVersion
	return s, nil
}

type configJSON struct {
	Version int               `json:"version"`
	Config  map[string]string `json:"config"`
}

func encodeConfig(c map[string]string) ([]byte, error) {
	if c == nil {
		c = map[string]string{}
	}
	return json.Marshal(configJSON{Version: 1, Config: c})
}

func decodeConfig(data []byte) (map[string]string, error) {
	if len(data) == 0 {
		return map[string]string{}, nil
	}
	var j configJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("zkstore: config: %w", err)
	}
	if j.Config == nil {
		j.Config = map[string]string{}
	}
	return j.Config, nil
}

type controllerJSON struct {
	Version   int    `json:"version"`
	BrokerID  int32  `json:"brokerid"`
	Timestamp string `json:"timestamp"`
}

type pidBlockJSON struct {
	Version    int    `json:"version"`
	Broker     int32  `json:"broker"`
	BlockStart string `json:"block_start"`
	BlockEnd   string `json:"block_end"`
}

type clusterIDJSON struct {
	Version string `json:"version"`
	ID      string `json:"id"`
}

type tpJSON struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

type isrChangeJSON struct {
	Version    int      `json:"version"`
	Partitions []tpJSON `json:"partitions"`
}

type configChangeJSON struct {
	Version    int    `json:"version"`
	EntityPath string `json:"entity_path"`
}
