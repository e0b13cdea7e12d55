package backend

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// A template that renders the same name for every request must not let one
// request's clean-up delete another lease's keys.
func TestCleanupByNameSparesOtherLeasesKeys(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "name_template": "vault-{{ .RoleName }}", "api_key_mode": "dynamic"})
	first := env.mustDo(t, logical.ReadOperation, "creds/r", nil)

	// The second request's API key is created, but its answer is lost.
	if _, err := env.emu.AddFault(emulator.Fault{Operation: "CreateAPIKey", Action: emulator.FaultCommitThenError, Status: http.StatusBadGateway, Times: 1}); err != nil {
		t.Fatal(err)
	}
	if resp, err := env.do(t, logical.ReadOperation, "creds/r", nil); err == nil && !resp.IsError() {
		t.Fatal("the second creds read succeeded through the fault")
	}

	appKey, apiKey := first.Data["application_key"].(string), first.Data["api_key"].(string)
	if got := env.statusWith(t, "/api/v2/validate_keys", apiKey, appKey); got != http.StatusOK {
		t.Errorf("the first lease's keys stopped working (HTTP %d) after another request's clean-up", got)
	}
	if n := len(env.issuedKeys()); n != 2 {
		t.Errorf("%d keys in Datadog, want the first lease's 2 (the failed request's deleted)", n)
	}
}

// Names stay unique whatever the template and however long the display
// name: the unique part survives truncation.
func TestNamesAreUniqueWhateverTheTemplate(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	long := strings.Repeat("x", 200)
	env.writeRole(t, "r", map[string]interface{}{"scopes": "dashboards_read", "api_key_mode": "none", "name_template": "vault-{{ .RoleName }}-" + long})
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		name := env.mustDo(t, logical.ReadOperation, "creds/r", nil).Data["name"].(string)
		if seen[name] || len(name) > maxNameLength || !strings.HasPrefix(name, "vault-r-xxx") {
			t.Errorf("name %q (length %d) is repeated, too long or not from the template", name, len(name))
		}
		seen[name] = true
	}
}

// The marker is 64 bits wide; names made with the 32-bit marker of before
// still parse as this mount's, and neither form is taken for the other.
func TestMarkerIsWideAndLegacyNamesStayOurs(t *testing.T) {
	env := newTestEnv(t)
	if len(env.b.marker) != 16 {
		t.Fatalf("marker %q: want 16 hex digits", env.b.marker)
	}
	current := "vault-r-token-1795700000-" + env.b.marker + "abcdefghijklmnop"
	legacy := "vault-r-token-1795700000-" + env.b.marker[:8] + "abcdefghijklmnop"
	other := "vault-r-token-1795700000-" + mountMarker("another mount") + "abcdefghijklmnop"
	otherLegacy := "vault-r-token-1795700000-" + mountMarker("another mount")[:8] + "abcdefghijklmnop"
	for name, want := range map[string]bool{current: true, legacy: true, other: false, otherLegacy: false} {
		marker, id, ok := parseName(name)
		if !ok || id != "abcdefghijklmnop" || env.b.ownMarker(marker) != want {
			t.Errorf("%s: parsed marker %q id %q ok %v; this mount's: %v, want %v", name, marker, id, ok, env.b.ownMarker(marker), want)
		}
	}
	// Tidy deletes this mount's orphans in both forms, and no other mount's.
	env.configure(t)
	ids := map[string]string{}
	for _, name := range []string{current, legacy, other, otherLegacy} {
		ids[name] = env.createKeyNamed(t, name)
	}
	env.tidyNow(t, map[string]interface{}{"safety_buffer": 0})
	for name, id := range ids {
		if gone := !env.keyExists(id); gone != (name == current || name == legacy) {
			t.Errorf("%s: deleted %v", name, gone)
		}
	}
}
