// Package config is the broker's configuration: Apache Kafka's key names,
// types, defaults and validation for server.properties and for topics, the
// sources a value comes from, and their conversion into typed settings.
// It knows no Server, connection or partition.
//
//   - properties.go: the Java properties file syntax.
//   - defs.go: a key's definition (Def: type, default, validation,
//     dynamic, sensitive) and the validators.
//   - broker.go, security.go, access.go: the broker key table (identity,
//     listeners, replication, topics' broker defaults, cleaner, group and
//     transaction coordinators, kvlog's own keys; ssl.* and sasl.* with
//     their per-listener forms listener.name.<l>.<key>; authorization and
//     quotas), and Parse: server.properties plus flag overrides validated
//     once into Broker, the static configuration with typed fields. Keys
//     kvlog cannot honour (custom Java classes, Kerberos, ZooKeeper TLS)
//     refuse the start.
//   - topic.go: the topic key table with each key's broker synonyms, and
//     the conversion to engine.Config.
//   - layers.go: Layers, the immutable stack of sources below a topic's
//     overrides (dynamic broker, dynamic cluster default, static, default),
//     resolved with the source of each value (DescribeConfigs) and read
//     typed: Int, Duration, Bool, Float, String, and their topic forms.
//     Every table key is parsed once when a Layers is built; a change
//     (AlterConfigs) builds a new one (Next), validated across keys
//     (ValidateBroker) before the broker swaps it in. Reading a key the
//     tables do not define, or as a type it is not, panics: it is a
//     programming error, never a silent zero. Names that come from clients
//     are checked with BrokerDef or LookupTopicDef first.
//   - validate.go: the rules across broker keys, shared by the static
//     file, dynamic changes and stored values.
//   - dynamic.go: stored dynamic and topic configs that no longer validate
//     are logged and left out (Sanitize, SanitizeTopicConfigs), so a bad
//     stored value never stops the broker.
//   - cleaner.go: the log.cleaner.* keys as cleaner.Config, the topic keys
//     the cleaner reads, and Kafka's rules for changing them live.
//   - describe.go: a topic's or a broker's configs as DescribeConfigs
//     reports them (Described: entry, synonyms, definition).
//   - topic_settings.go: TopicSettings, the topic values the broker
//     enforces itself (min.insync.replicas, the stored codec, the
//     cleaner's topic settings), resolved once per topic and change.
//   - listener_security.go: ListenerSecurity, a listener's protocol and its
//     security settings (TLS configuration, principal mapping rules, SASL
//     mechanisms, PLAIN users from JAAS, re-authentication times) from the
//     ssl.* and sasl.* keys in their per-listener forms, rebuilt when the
//     layers or the JAAS file change (certificates reload without a
//     restart); ListenerLookup and JAASFor read those forms for the
//     inter-broker dialer too.
//
// config/server.properties at the repository root lists every broker key
// with its default (TestSampleServerProperties checks it).
package config
