package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// walKindCreate records Datadog objects about to be created for a creds
// request. The entry is removed once the lease owns them; one still present
// after walRollbackMinAge means the request failed midway, so its objects
// are deleted by name.
const walKindCreate = "create"

// walRollbackMinAge is well above the longest creds request (a few Datadog
// calls, each bounded by the client timeout), so a rollback never races a
// request that is still running.
const walRollbackMinAge = 5 * time.Minute

type walCreate struct {
	Objects []datadogObject `json:"objects"`
}

func (b *datadogBackend) walRollback(ctx context.Context, req *logical.Request, kind string, data interface{}) error {
	if kind != walKindCreate {
		return fmt.Errorf("unknown write-ahead log kind %q", kind)
	}
	var entry walCreate
	if err := mapToStruct(data, &entry); err != nil {
		return err
	}
	client, err := b.getClient(ctx, req.Storage)
	if err != nil {
		return err
	}
	if client == nil {
		return fmt.Errorf("cannot roll back Datadog keys %s: %w", describeObjects(entry.Objects), errNotConfigured)
	}
	// The IDs were not recorded (the WAL is written before the creates), so
	// the objects are found by their unique names.
	for i := range entry.Objects {
		entry.Objects[i].ID = ""
	}
	return b.deleteObjects(ctx, client, entry.Objects)
}
