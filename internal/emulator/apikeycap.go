package emulator

import (
	"fmt"
	"net/http"
)

// The API key cap per organisation. Datadog's documentation ("API and
// Application Keys", https://docs.datadoghq.com/account_management/api-app-keys/)
// says an organisation holds at least one API key and up to 50 by default;
// Datadog support raises the cap on request, and the managed API keys
// Datadog makes for integrations do not count (the emulator makes none).
// GET /api/v2/api_keys reports the organisation's own cap as
// meta.max_allowed (the recorded organisation's is 200).
//
// No refusal past the cap was recorded: its status (400) and message are
// the emulator's assumption. The engine must depend on neither: it can know
// the cap from meta.max_allowed and the count from
// meta.page.total_filtered_count.

// defaultMaxAPIKeys is Datadog's documented default cap.
const defaultMaxAPIKeys = 50

// checkAPIKeyCap refuses a cap under Datadog's floor of one API key.
func checkAPIKeyCap(n int) error {
	if n < 1 {
		return fmt.Errorf("the API key cap of the organisation must be at least 1 (an organisation holds at least one API key), not %d", n)
	}
	return nil
}

// apiKeyCount is how many API keys the organisation holds. Callers hold
// e.mu (or run before e is shared).
func (e *Emulator) apiKeyCount() int {
	n := 0
	for _, k := range e.org.Keys {
		if k.Kind == KindAPIKey {
			n++ // API keys are deleted, never kept revoked
		}
	}
	return n
}

// noteAPIKeyPeak raises the recorded peak to the current count. Callers
// hold e.mu (or run before e is shared).
func (e *Emulator) noteAPIKeyPeak() {
	e.org.APIKeysPeak = max(e.org.APIKeysPeak, e.apiKeyCount())
}

// apiKeyCapReached is the answer to a create of one API key too many, or
// nil while the organisation has room. Callers hold e.mu.
func (e *Emulator) apiKeyCapReached(kind *keyKind) *response {
	if kind != apiKeys || e.apiKeyCount() < e.org.MaxAPIKeys {
		return nil
	}
	resp := errorResponse(http.StatusBadRequest,
		fmt.Sprintf("API key limit reached: this organisation may hold at most %d API keys", e.org.MaxAPIKeys))
	return &resp
}

// MaxAPIKeys returns the most API keys the organisation may hold.
func (e *Emulator) MaxAPIKeys() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.org.MaxAPIKeys
}

// SetMaxAPIKeys changes the organisation's API key cap, as Datadog support
// would. Lowering it below the count deletes nothing: creates are refused
// until keys are deleted.
func (e *Emulator) SetMaxAPIKeys(n int) error {
	if err := checkAPIKeyCap(n); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.org.MaxAPIKeys = n
	e.saveLogged()
	return nil
}

// APIKeyCount returns how many API keys the organisation holds now.
func (e *Emulator) APIKeyCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.apiKeyCount()
}

// APIKeyPeak returns the most API keys the organisation held at once since
// it was made (a state file keeps the figure across restarts) or since
// ResetAPIKeyPeak, so that a test can check the org never held more than
// its cap.
func (e *Emulator) APIKeyPeak() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.org.APIKeysPeak
}

// ResetAPIKeyPeak starts the peak again from the current count.
func (e *Emulator) ResetAPIKeyPeak() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.org.APIKeysPeak = e.apiKeyCount()
	e.saveLogged()
}
