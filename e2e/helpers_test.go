package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

// datadog is one test's Datadog: an emulator served on loopback, where the
// plugin process inside Vault reaches it, with every call checked against
// Datadog's OpenAPI specification.
type datadog struct {
	*emulatortest.Server
}

// startDatadog starts an emulator; its root keys are recorded as secrets
// whether or not the test configures them.
func startDatadog(t *testing.T) *datadog {
	t.Helper()
	return startDatadogWith(t, emulator.Options{})
}

func startDatadogWith(t *testing.T, opts emulator.Options) *datadog {
	t.Helper()
	s := emulatortest.Start(t, opts)
	noteSecret(s.APIKey(), s.AppKey())
	return &datadog{Server: s}
}

// do sends a request to the emulated API with the given auth headers and
// returns the status and decoded body.
func (d *datadog) do(t *testing.T, method, path, body string, headers map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, d.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// get calls the emulated Datadog API with a key pair and returns the HTTP status.
func (d *datadog) get(t *testing.T, path, apiKey, appKey string) int {
	t.Helper()
	status, _ := d.do(t, http.MethodGet, path, "", map[string]string{"DD-API-KEY": apiKey, "DD-APPLICATION-KEY": appKey})
	return status
}

func (d *datadog) key(id string) (emulator.Key, bool) {
	for _, k := range d.Keys() {
		if k.ID == id {
			return k, true
		}
	}
	return emulator.Key{}, false
}

// keysNamed returns the live keys the engine created under one credential name.
func (d *datadog) keysNamed(name string) []emulator.Key {
	var found []emulator.Key
	for _, k := range d.Keys() {
		if k.Name == name {
			found = append(found, k)
		}
	}
	return found
}

// waitKeysGone waits until none of the keys exists in Datadog any more.
func (d *datadog) waitKeysGone(t *testing.T, timeout time.Duration, ids ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		for _, id := range ids {
			if _, ok := d.key(id); ok {
				left = append(left, id)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys %v still exist in Datadog %s after their lease ended", left, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// requireKeysIssued checks that the credential's keys exist in Datadog as
// the role asked: named after it, owned by the configured user, and (for the
// application key) limited to the role's scopes.
func (d *datadog) requireKeysIssued(t *testing.T, creds map[string]any, role string, scopes []string) {
	t.Helper()
	name := str(t, creds, "name")
	if !strings.HasPrefix(name, "vault-"+role+"-") {
		t.Errorf("credential name %q does not start with %q", name, "vault-"+role+"-")
	}
	app, ok := d.key(str(t, creds, "application_key_id"))
	if !ok {
		t.Fatalf("application key %v is not in Datadog", creds["application_key_id"])
	}
	if app.Kind != emulator.KindApplicationKey || app.Name != name || app.OwnerID != d.UserID() {
		t.Errorf("application key in Datadog = %+v, want an application key named %q owned by %s", app, name, d.UserID())
	}
	if !slices.Equal(app.Scopes, scopes) {
		t.Errorf("application key scopes in Datadog = %v, want %v", app.Scopes, scopes)
	}
	apiKey, ok := d.key(str(t, creds, "api_key_id"))
	if !ok {
		t.Fatalf("API key %v is not in Datadog", creds["api_key_id"])
	}
	// The lease's own API key (api_key_mode dynamic), or the role's shared one.
	if apiKey.Kind != emulator.KindAPIKey || apiKey.Name != name && !strings.HasPrefix(apiKey.Name, "vault-"+role+"-shared-") {
		t.Errorf("API key in Datadog = %+v, want an API key named %q, or the role's shared API key", apiKey, name)
	}
}

// newClient is a root client of the test server. It does not retry: the
// Vault client's retries of HTTP 5xx would hide a failure from the test (and
// send the request again).
func newClient(t *testing.T) *api.Client {
	t.Helper()
	client, err := vault.client()
	if err != nil {
		t.Fatal(err)
	}
	client.SetMaxRetries(0)
	return client
}

// startEngine gives a test its own Datadog and its own mount of the engine,
// configured for that Datadog.
func startEngine(t *testing.T) (*datadog, *api.Client, string) {
	t.Helper()
	dd := startDatadog(t)
	client := newClient(t)
	mount := mountPath(t)
	enableEngine(t, client, mount, dd)
	configure(t, client, mount, dd)
	return dd, client, mount
}

// cli runs the vault CLI and fails the test if it fails.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := vault.cli(args...)
	if err != nil {
		t.Fatalf("vault %s: %v\n%s", redactSecrets(strings.Join(args, " ")), err, redactSecrets(out))
	}
	return out
}

// mountPath derives a mount path from the test's name, so that every test
// has its own engine.
func mountPath(t *testing.T) string {
	return "datadog-" + strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
}

// enableEngine mounts the plugin at path, to be disabled when the test ends,
// and checks that the mount runs the version built for the tests.
func enableEngine(t *testing.T, client *api.Client, path string, dd *datadog) {
	t.Helper()
	if err := client.Sys().Mount(path, &api.MountInput{Type: pluginName}); err != nil {
		t.Fatalf("enabling the engine at %s: %v", path, err)
	}
	disableAtCleanup(t, client, path, dd)
	requireRunningVersion(t, client, path)
}

// disableAtCleanup disables the engine at path when the test ends, which
// revokes its leases; with dd given, that must leave no key the engine
// created in Datadog.
func disableAtCleanup(t *testing.T, client *api.Client, path string, dd *datadog) {
	t.Cleanup(func() {
		if err := client.Sys().Unmount(path); err != nil {
			t.Errorf("disabling the engine at %s: %v", path, err)
		}
		if dd == nil {
			return
		}
		for _, k := range dd.Keys() {
			if strings.HasPrefix(k.Name, "vault-") {
				t.Errorf("key %s (%s) is still in Datadog after its engine was disabled", k.ID, k.Name)
			}
		}
	})
}

func requireRunningVersion(t *testing.T, client *api.Client, path string) {
	t.Helper()
	mount, err := client.Sys().GetMount(path)
	if err != nil {
		t.Fatalf("reading mount %s: %v", path, err)
	}
	if mount.RunningVersion != pluginVersion {
		t.Errorf("mount %s runs plugin version %q, want %q", path, mount.RunningVersion, pluginVersion)
	}
}

// configure points the engine at path to the test's Datadog.
func configure(t *testing.T, client *api.Client, path string, dd *datadog) {
	t.Helper()
	write(t, client, path+"/config", map[string]any{
		"api_key": dd.APIKey(),
		"app_key": dd.AppKey(),
		"api_url": dd.URL,
	})
}

func write(t *testing.T, client *api.Client, path string, data map[string]any) {
	t.Helper()
	if _, err := client.Logical().Write(path, data); err != nil {
		noteError(err)
		t.Fatalf("writing %s: %v", path, err)
	}
}

// readCreds reads credentials through the API, failing the test if none
// were issued.
func readCreds(t *testing.T, client *api.Client, path string) *api.Secret {
	t.Helper()
	secret, err := tryReadCreds(client, path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	if secret == nil || secret.LeaseID == "" {
		t.Fatalf("reading %s returned no lease: %s", path, redactSecrets(fmt.Sprintf("%+v", secret)))
	}
	return secret
}

// tryReadCreds reads credentials through the API, recording the secrets
// issued, or the error: every creds read of the suite goes through it.
func tryReadCreds(client *api.Client, path string) (*api.Secret, error) {
	secret, err := client.Logical().Read(path)
	noteError(err)
	if secret != nil {
		noteIssuedCredentials(secret.Data)
	}
	return secret, err
}

// str returns a string field of a response, failing if it is missing.
func str(t *testing.T, data map[string]any, field string) string {
	t.Helper()
	s, _ := data[field].(string)
	if s == "" {
		t.Fatalf("response has no %s: %s", field, redactSecrets(fmt.Sprint(data)))
	}
	return s
}

// requireBadRequest checks that a Vault request failed with HTTP 400 and a
// message containing each of want.
func requireBadRequest(t *testing.T, err error, want ...string) {
	t.Helper()
	noteError(err)
	var respErr *api.ResponseError
	if !errors.As(err, &respErr) {
		t.Fatalf("got error %v, want an HTTP 400 from Vault", err)
	}
	msg := strings.Join(respErr.Errors, "; ")
	if respErr.StatusCode != http.StatusBadRequest {
		t.Errorf("got HTTP %d (%s), want 400", respErr.StatusCode, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
}

// configureShortTimeout points the engine at dd with a request_timeout of
// 2 s: a creds request is then surely over 46 s after it began (4×2 s for
// its calls, 8 s of clean-up, 30 s of margin), when Vault's rollback may
// replay its WAL entry.
func configureShortTimeout(t *testing.T, client *api.Client, path string, dd *datadog) {
	t.Helper()
	noteSecret(dd.APIKey(), dd.AppKey())
	write(t, client, path+"/config", map[string]any{
		"api_key":         dd.APIKey(),
		"app_key":         dd.AppKey(),
		"api_url":         dd.URL,
		"request_timeout": 2,
	})
}

// noteCreds records the secrets of an issued credential.
func noteCreds(data map[string]any) {
	for _, field := range []string{"application_key", "api_key", "access_token"} {
		s, _ := data[field].(string)
		noteSecret(s)
	}
}

// credentialIDs returns the Datadog ids of an issued credential's keys.
func credentialIDs(data map[string]any) []string {
	var ids []string
	for _, field := range []string{"application_key_id", "api_key_id", "access_token_id"} {
		if id, _ := data[field].(string); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// irrevocableLeases counts the leases of the engine at mount that Vault
// gave up revoking.
func irrevocableLeases(t *testing.T, client *api.Client, mount string) int {
	t.Helper()
	mountInfo, err := client.Sys().GetMount(mount)
	if err != nil {
		t.Fatalf("reading mount %s: %v", mount, err)
	}
	counts, err := client.Logical().ReadWithData("sys/leases/count", map[string][]string{"type": {"irrevocable"}})
	if err != nil {
		t.Fatalf("counting irrevocable leases: %v", err)
	}
	byMount, _ := counts.Data["counts"].(map[string]any)
	n, _ := byMount[mountInfo.Accessor].(json.Number)
	count, _ := n.Int64() // absent: none
	return int(count)
}

// runTidy runs the engine's tidy at mount, waits for it to finish, and
// returns how many Datadog keys it deleted; -1 if the engine has no tidy.
func runTidy(t *testing.T, client *api.Client, mount, safetyBuffer string) (deleted int) {
	t.Helper()
	_, err := client.Logical().Write(mount+"/tidy", map[string]any{"safety_buffer": safetyBuffer})
	if err != nil {
		noteError(err)
		t.Fatalf("starting tidy at %s: %v", mount, err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		status, err := client.Logical().Read(mount + "/tidy/status")
		if err != nil || status == nil {
			noteError(err)
			t.Fatalf("reading %s/tidy/status: %v", mount, err)
		}
		switch status.Data["state"] {
		case "finished":
			n, err := status.Data["deleted"].(json.Number).Int64()
			if err != nil {
				t.Fatalf("tidy status without a number deleted: %v", status.Data)
			}
			return int(n)
		case "error":
			t.Fatalf("tidy at %s failed: %v", mount, status.Data["error"])
		}
		if time.Now().After(deadline) {
			t.Fatalf("tidy at %s still %v after 5 minutes", mount, status.Data["state"])
		}
		time.Sleep(250 * time.Millisecond)
	}
}
