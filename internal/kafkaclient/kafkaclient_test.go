package kafkaclient

import (
	"fmt"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Goka runs on sarama: a key must land on the partition sarama's default
// hash partitioner picks, or a processor's table would miss it.
func TestPartitionerAgreesWithSarama(t *testing.T) {
	for _, parts := range []int32{1, 2, 3, 8, 13, 64} {
		t.Run(fmt.Sprint(parts), func(t *testing.T) {
			sp := sarama.NewHashPartitioner("rolodex.events")
			kp := Partitioner().ForTopic("rolodex.events")
			for i := 0; i < 2000; i++ {
				key := fmt.Sprintf("tenant-%d/email:user%d@example.com", i%7, i)
				want, err := sp.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, parts)
				if err != nil {
					t.Fatal(err)
				}
				got := kp.Partition(&kgo.Record{Key: []byte(key)}, int(parts))
				if int32(got) != want {
					t.Fatalf("key %q: franz-go partition %d, sarama %d", key, got, want)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		brokers []string
		ok      bool
	}{{nil, false}, {[]string{"localhost"}, false}, {[]string{"localhost:9092"}, true}} {
		if err := (&Config{Brokers: tt.brokers}).Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%v) = %v, want ok=%v", tt.brokers, err, tt.ok)
		}
	}
	if got := ParseBrokers(" a:1, b:2,,"); len(got) != 2 || got[1] != "b:2" {
		t.Errorf("ParseBrokers = %v", got)
	}
}
