package schemas

import (
	"hash/fnv"
	"testing"

	"github.com/IBM/sarama"
)

// TestDirectoryKey: every partition's directory key lands on that
// partition by the partitioner goka's producer uses (sarama's hash
// partitioner over FNV-1a 32), so its table value stays there.
func TestDirectoryKey(t *testing.T) {
	for _, n := range []int32{1, 3, 12, 64} {
		part := sarama.NewCustomHashPartitioner(fnv.New32a)(TopicFanoutInput)
		for p := int32(0); p < n; p++ {
			k := DirectoryKey(p, n)
			got, err := part.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(k)}, n)
			if err != nil {
				t.Fatal(err)
			}
			if got != p {
				t.Fatalf("%d partitions: %s goes to %d, want %d", n, k, got, p)
			}
			if k != DirectoryKey(p, n) {
				t.Fatal("not deterministic")
			}
		}
	}
}
