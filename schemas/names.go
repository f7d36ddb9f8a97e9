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
)

// Consumer groups.
const (
	// GroupKafkaIngest is the group of the Kafka-native ingest connector.
	GroupKafkaIngest = "rolodex-ingest-kafka"
)

// IngestTopic is the topic a partner produces to straight into Kafka.
func IngestTopic(partner string) string { return IngestTopicPrefix + partner }

// PartnerOfIngestTopic returns the partner of an ingest topic name.
func PartnerOfIngestTopic(topic string) (string, bool) {
	p, ok := strings.CutPrefix(topic, IngestTopicPrefix)
	return p, ok && p != ""
}
