package backend

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// instantEvents also takes events at once, for the creds path with
// audit_events on.
type instantEvents struct {
	*instantDatadog
	posted atomic.Int64
}

func (d *instantEvents) SendEvent(context.Context, auditEventBody) error {
	d.posted.Add(1)
	return nil
}

// BenchmarkCredsReadAuditEvents is BenchmarkCredsRead with config's
// audit_events on: what preparing and queueing the event adds to
// a creds read (the posting itself runs in the background).
func BenchmarkCredsReadAuditEvents(b *testing.B) {
	for _, role := range []string{"none", "dynamic", "shared", "token"} {
		b.Run(role, func(b *testing.B) {
			be, storage := benchEnv(b)
			client := &instantEvents{instantDatadog: &instantDatadog{}}
			be.newClient = func(*datadogConfig, hclog.Logger) (datadogAPI, error) { return client, nil }
			cfg, err := getConfig(context.Background(), storage)
			if err != nil {
				b.Fatal(err)
			}
			cfg.AuditEvents = true
			entry, err := logical.StorageEntryJSON(configPath, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := storage.Put(context.Background(), entry); err != nil {
				b.Fatal(err)
			}
			be.reset()
			loopCredsRead(b, be, storage, role)
			b.StopTimer()
			be.trail.close()
			if sent, failed := be.trail.counts(); sent+failed == 0 || failed > 0 && sent == 0 {
				b.Fatalf("events: %d posted, %d failed", sent, failed)
			}
		})
	}
}
