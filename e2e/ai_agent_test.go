package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// TestAIAgentExample sets up examples/ai-agent as its setup.sh does (with
// its own mount, AppRole path and policy name): the agent's token reads
// the one role's credentials and is refused everything else; agent.hcl
// runs the task with that role's keys; revoking the AppRole's tokens, as
// the README's kill switch does, deletes them in Datadog.
func TestAIAgentExample(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/other", map[string]any{"scopes": "dashboards_read"})
	dir, approle, policy := runAIAgentSetup(t, client, mount)
	roleID := strings.TrimSpace(readFile(t, filepath.Join(dir, "role-id")))
	agentSecretID := strings.TrimSpace(readFile(t, filepath.Join(dir, "secret-id")))
	noteSecret(agentSecretID)

	// A login of the agent's identity, with a secret ID of its own (the
	// agent's logs in once only), as the README makes one per task.
	secretID := strings.TrimSpace(cli(t, "write", "-f", "-field=secret_id", "auth/"+approle+"/role/ai-agent/secret-id"))
	noteSecret(secretID)
	login, err := client.Logical().Write("auth/"+approle+"/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil || login == nil || login.Auth == nil {
		noteError(err)
		t.Fatalf("logging in with the AppRole: %v", err)
	}
	noteSecret(login.Auth.ClientToken)
	if !slices.Equal(login.Auth.Policies, []string{policy}) {
		t.Errorf("the agent's token has policies %v, want only %s", login.Auth.Policies, policy)
	}
	agentClient, err := client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	agentClient.SetToken(login.Auth.ClientToken)

	creds := readCreds(t, agentClient, mount+"/creds/ai-agent")
	requireWorkingKeys(t, dd, ddEnv{str(t, creds.Data, "api_key"), str(t, creds.Data, "application_key"), str(t, creds.Data, "site")},
		[]string{"/api/v1/monitor"}, []string{"/api/v1/dashboard"})
	if app, ok := dd.key(str(t, creds.Data, "application_key_id")); !ok || !slices.Equal(app.Scopes, []string{"monitors_read"}) {
		t.Errorf("the agent's application key in Datadog: %+v, want one with the role's scopes [monitors_read]", app)
	}
	if _, err := agentClient.Sys().Renew(creds.LeaseID, 0); err != nil {
		t.Errorf("the agent's token renewing its own lease: %v", err)
	}
	if _, err := agentClient.Auth().Token().RenewSelf(0); err != nil {
		t.Errorf("the agent's token renewing itself: %v", err)
	}
	other := readCreds(t, client, mount+"/creds/other")

	for _, denied := range []struct {
		what string
		do   func() error
	}{
		{"reading config", func() error { _, err := agentClient.Logical().Read(mount + "/config"); return err }},
		{"writing config", func() error {
			_, err := agentClient.Logical().Write(mount+"/config", map[string]any{"api_url": dd.URL})
			return err
		}},
		{"listing roles", func() error { _, err := agentClient.Logical().List(mount + "/roles"); return err }},
		{"reading its role", func() error { _, err := agentClient.Logical().Read(mount + "/roles/ai-agent"); return err }},
		{"writing its role", func() error {
			_, err := agentClient.Logical().Write(mount+"/roles/ai-agent", map[string]any{"scopes": "monitors_write"})
			return err
		}},
		{"reading another role's creds", func() error { _, err := tryReadCreds(agentClient, mount+"/creds/other"); return err }},
		{"renewing another role's lease", func() error { _, err := agentClient.Sys().Renew(other.LeaseID, 0); return err }},
		{"revoking a lease", func() error { return agentClient.Sys().Revoke(creds.LeaseID) }},
		{"running tidy", func() error { _, err := agentClient.Logical().Write(mount+"/tidy", nil); return err }},
		{"listing leases", func() error {
			_, err := agentClient.Logical().List("sys/leases/lookup/" + mount + "/creds/ai-agent/")
			return err
		}},
		{"reading mounts", func() error { _, err := agentClient.Sys().ListMounts(); return err }},
		{"reading policies", func() error { _, err := agentClient.Sys().ListPolicies(); return err }},
		{"making itself a secret ID", func() error {
			_, err := agentClient.Logical().Write("auth/"+approle+"/role/ai-agent/secret-id", nil)
			return err
		}},
		{"looking up its token", func() error { _, err := agentClient.Auth().Token().LookupSelf(); return err }},
	} {
		requireForbidden(t, denied.what, denied.do())
	}
	// The test's login is done: revoking its token deletes its keys.
	if err := client.Auth().Token().RevokeTree(login.Auth.ClientToken); err != nil {
		t.Fatalf("revoking the test's AppRole token: %v", err)
	}
	dd.waitKeysGone(t, 30*time.Second, credentialIDs(creds.Data)...)

	agent := startAgent(t, dir, "ai-agent/agent.hcl",
		`\"datadog/creds/ai-agent\"`, `\"`+mount+`/creds/ai-agent\"`,
		`"auth/ai-agents"`, `"auth/`+approle+`"`)
	env, seen := waitAgentKeys(t, agent.childEnv, time.Minute)
	requireWorkingKeys(t, dd, env, []string{"/api/v1/monitor"}, []string{"/api/v1/dashboard"})
	ids, _ := requireOneLease(t, dd, client, mount, "ai-agent", seen)
	if _, err := os.Stat(filepath.Join(dir, "secret-id")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the secret-id file is still there once the agent has logged in (%v)", err)
	}

	// The README's kill switch: every token of the AppRole, and so every
	// lease read with one, revoked at once.
	cli(t, "token", "revoke", "-mode=path", "auth/"+approle+"/")
	dd.waitKeysGone(t, 30*time.Second, ids...)
	if got := dd.get(t, "/api/v2/validate_keys", env.apiKey, env.appKey); got != http.StatusForbidden {
		t.Errorf("GET /api/v2/validate_keys with the task's keys after the kill switch: HTTP %d, want 403", got)
	}
	// Vault drops each lease once its revocation returned, just after its
	// keys are gone.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		leases := listLeases(t, client, mount, "ai-agent")
		if len(leases) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("leases %v are left under %s/creds/ai-agent/ 10s after the kill switch deleted their keys", leases, mount)
			break
		}
	}
}

// runAIAgentSetup runs examples/ai-agent/setup.sh for mount, with its own
// AppRole path and policy name (removed at cleanup) and env added, in a new
// directory, which it returns with the AppRole path and the policy name.
func runAIAgentSetup(t *testing.T, client *api.Client, mount string, env ...string) (dir, approle, policy string) {
	t.Helper()
	approle, policy, dir = "approle-"+mount, "policy-"+mount, t.TempDir()
	setup, err := filepath.Abs(filepath.Join("..", "examples", "ai-agent", "setup.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", setup)
	cmd.Dir = dir
	cmd.Env = append(append(vaultEnv(vault.addr, vault.token),
		"PATH="+filepath.Dir(vault.bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"DATADOG_MOUNT="+mount, "APPROLE_PATH="+approle, "POLICY_NAME="+policy), env...)
	t.Cleanup(func() {
		// Disabling the AppRole revokes its tokens, and with them their leases.
		if err := client.Sys().DisableAuth(approle); err != nil {
			t.Errorf("disabling auth/%s: %v", approle, err)
		}
		if err := client.Sys().DeletePolicy(policy); err != nil {
			t.Errorf("deleting policy %s: %v", policy, err)
		}
	})
	out, err := cmd.CombinedOutput()
	if err != nil {
		noteError(fmt.Errorf("%w: %s", err, out))
		t.Fatalf("setup.sh: %v\n%s", err, redactSecrets(string(out)))
	}
	return dir, approle, policy
}

// TestAIAgentExampleWithAServiceAccessToken runs examples/ai-agent/setup.sh
// with SERVICE_ACCOUNT_ID, on an engine whose own root is a service access
// token (Datadog's model for automation): the agent's login reads a service
// access token that works as DD-APPLICATION-KEY alone, within monitors_read,
// until the agent's token, and with it the lease, is revoked.
func TestAIAgentExampleWithAServiceAccessToken(t *testing.T) {
	t.Parallel()
	dd := startDatadog(t)
	client := newClient(t)
	mount := mountPath(t)
	enableEngine(t, client, mount, dd)
	configureTokenRoot(t, client, mount, dd, time.Now().Add(30*24*time.Hour), "monitors_read")
	sa := dd.serviceAccount(t)
	dir, approle, _ := runAIAgentSetup(t, client, mount, "SERVICE_ACCOUNT_ID="+sa)
	role, err := client.Logical().Read(mount + "/roles/ai-agent")
	if err != nil || role == nil || role.Data["credential_type"] != "service_access_token" || role.Data["service_account_id"] != sa {
		t.Fatalf("setup.sh with SERVICE_ACCOUNT_ID wrote role %v (%v), want a service_access_token role of %s", role, err, sa)
	}

	login, err := client.Logical().Write("auth/"+approle+"/login", map[string]any{
		"role_id": strings.TrimSpace(readFile(t, filepath.Join(dir, "role-id"))), "secret_id": strings.TrimSpace(readFile(t, filepath.Join(dir, "secret-id"))),
	})
	if err != nil || login == nil || login.Auth == nil {
		noteError(err)
		t.Fatalf("logging in with the AppRole: %v", err)
	}
	noteSecret(login.Auth.ClientToken)
	agentClient, err := client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	agentClient.SetToken(login.Auth.ClientToken)
	creds := readCreds(t, agentClient, mount+"/creds/ai-agent")
	token := str(t, creds.Data, "access_token")
	if _, has := creds.Data["api_key"]; has {
		t.Errorf("a token lease returned an API key")
	}
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/monitor", "", appKeyHeader(token)); got != http.StatusOK {
		t.Errorf("the task's token as DD-APPLICATION-KEY alone, in scope: HTTP %d, want 200", got)
	}
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/dashboard", "", appKeyHeader(token)); got != http.StatusForbidden {
		t.Errorf("the task's token as DD-APPLICATION-KEY alone, out of scope: HTTP %d, want 403", got)
	}
	cli(t, "token", "revoke", "-mode=path", "auth/"+approle+"/")
	dd.waitKeysGone(t, 30*time.Second, str(t, creds.Data, "access_token_id"))
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/monitor", "", appKeyHeader(token)); got != http.StatusForbidden {
		t.Errorf("the task's token after the kill switch: HTTP %d, want 403", got)
	}
}
