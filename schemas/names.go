// Package schemas is the contract every Rolodex component shares: the Go
// types of the records on Kafka, their Avro schemas and codecs, and the one
// list of topic, table and group names.
package schemas

import "strings"

// Topics. Their names are part of the public contract (docs/topics.md).
const (
	// TopicEvents carries every accepted event, validated and normalised,
	// with the tenant attached. Key: EventKey. Value: Avro Event, Confluent
	// framing.
	TopicEvents = "rolodex.events"
	// TopicDeadLetter carries every rejected record with the reason, the
	// source and the original bytes. Key: the partner name. Value: Avro
	// DeadLetter, Confluent framing.
	TopicDeadLetter = "rolodex.deadletter"
	// IngestTopicPrefix starts the name of every partner's own ingest topic.
	IngestTopicPrefix = "rolodex.ingest."
	// TopicMerges carries a Merge record each time a profile merges into
	// another. Key: the merged-away profile id. Value: JSON Merge.
	TopicMerges = "rolodex.profile.merges"
	// TopicAudit carries a Refusal record each time merge protection keeps
	// two profiles apart. Key: the refused profile id. Value: JSON Refusal.
	TopicAudit = "rolodex.profile.audit"
	// TopicProfiles (compacted) carries the latest state of every profile.
	// Key: profile id. Value: JSON Profile (MergedInto set once merged away).
	TopicProfiles = "rolodex.profiles"
	// TopicProfileTags carries one TagChange record per effective change
	// of a profile's tags (docs/profile-status.md). Key: profile id.
	// Value: JSON TagChange.
	TopicProfileTags = "rolodex.profile.tags"
)

// Consumer groups.
const (
	// GroupKafkaIngest is the group of the Kafka-native ingest connector.
	GroupKafkaIngest = "rolodex-ingest-kafka"
	// GroupIdentity is the goka group of the identity stage. Its table
	// topic is "rolodex-identity-table" (values: JSON Node), its loopback
	// "rolodex-identity-loop" (values: JSON Message).
	GroupIdentity = "rolodex-identity"
	// GroupSinkClickHouse is the consumer group of the ClickHouse sink.
	GroupSinkClickHouse = "rolodex-sink-clickhouse"
	// GroupTags is the goka group of the tag stage (processors/tags): it
	// reads rolodex.profiles and writes rolodex.profile.tags. Its table
	// topic is "rolodex-tags-table".
	GroupTags = "rolodex-tags"
)

// IngestTopic is the topic a partner produces to straight into Kafka.
func IngestTopic(partner string) string { return IngestTopicPrefix + partner }

// PartnerOfIngestTopic returns the partner of an ingest topic name.
func PartnerOfIngestTopic(topic string) (string, bool) {
	p, ok := strings.CutPrefix(topic, IngestTopicPrefix)
	return p, ok && p != ""
}
