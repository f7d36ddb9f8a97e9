package webhooks

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rolodex/rolodex/internal/kafkaclient"
)

// The delivery groups' session: kafkaclient's short default unless the
// config sets one (a killed instance's partitions wait for it to end).
func TestNewClientSession(t *testing.T) {
	for _, tt := range []struct {
		session, want, beat time.Duration
	}{
		{0, kafkaclient.SessionTimeout, kafkaclient.HeartbeatInterval},
		{3 * time.Second, 3 * time.Second, time.Second},
	} {
		cl, err := newClient([]string{"127.0.0.1:1"}, tt.session, "lead delivery", "test",
			kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t"))
		if err != nil {
			t.Fatal(err)
		}
		got, beat := cl.OptValue(kgo.SessionTimeout), cl.OptValue(kgo.HeartbeatInterval)
		cl.Close()
		if got != tt.want || beat != tt.beat {
			t.Errorf("SessionTimeout %v: session %v, heartbeat %v; want %v, %v", tt.session, got, beat, tt.want, tt.beat)
		}
	}
	if kafkaclient.SessionTimeout > 6*time.Second {
		t.Errorf("kafkaclient.SessionTimeout %v: a killed delivery instance's partitions would wait that long", kafkaclient.SessionTimeout)
	}
}
