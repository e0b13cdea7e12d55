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
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
)

// The examples' role, as `make dev` writes it, with a lease short enough
// for a test to see Vault Agent replace it at its max TTL.
var agentRole = map[string]any{"scopes": "dashboards_read,monitors_read", "ttl": "5s", "max_ttl": "15s"}

// TestVaultAgentTemplate runs examples/vault-agent/template.hcl in a real
// Vault Agent: the file it renders holds working keys of one lease, and
// once that lease reaches its max TTL, new keys while the old ones are
// deleted in Datadog.
func TestVaultAgentTemplate(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/agent-role", agentRole)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "vault-token"), vault.token+"\n")

	startAgent(t, dir, "vault-agent/template.hcl", `"datadog/creds/agent-role"`, `"`+mount+`/creds/agent-role"`)
	rendered := filepath.Join(dir, "datadog.env")
	followAgentKeys(t, dd, client, mount, "agent-role", func() (ddEnv, error) {
		data, err := os.ReadFile(rendered)
		if err != nil {
			return ddEnv{}, err
		}
		return parseEnvFile(string(data))
	})
}

// TestVaultAgentTokenTemplate runs examples/vault-agent/template-token.hcl
// in a real Vault Agent with a token role, as its README sets it up: the
// file it renders holds DD_APP_KEY (the token) and DD_SITE, no API key; a
// client sending that token alone as DD-APPLICATION-KEY is served within
// the role's scopes and refused outside them; once the lease reaches its
// max TTL the agent renders a new token, and the old one, its lease
// revoked, is refused.
func TestVaultAgentTokenTemplate(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/agent-token-role", map[string]any{
		"credential_type": "personal_access_token", "scopes": "dashboards_read", "ttl": "5s", "max_ttl": "15s",
	})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "vault-token"), vault.token+"\n")

	startAgent(t, dir, "vault-agent/template-token.hcl", `"datadog/creds/agent-token-role"`, `"`+mount+`/creds/agent-token-role"`)
	rendered := filepath.Join(dir, "datadog.env")
	current := func() (map[string]string, error) {
		data, err := os.ReadFile(rendered)
		if err != nil {
			return nil, err
		}
		env := map[string]string{}
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			name, value, _ := strings.Cut(line, "=")
			if name != "DD_SITE" {
				noteSecret(value)
			}
			env[name] = value
		}
		if len(env) != 2 || env["DD_APP_KEY"] == "" || env["DD_SITE"] == "" {
			return nil, fmt.Errorf("%d variables, want DD_APP_KEY and DD_SITE alone", len(env))
		}
		return env, nil
	}
	var first map[string]string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		env, err := current()
		if err == nil {
			first = env
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token rendered by the agent after a minute: %v", err)
		}
	}
	token := first["DD_APP_KEY"]
	if !strings.HasPrefix(token, "ddpat_") || first["DD_SITE"] != "datadoghq.com" {
		t.Errorf("rendered DD_APP_KEY %.6s…, DD_SITE %q: want a personal access token and the configured site", token, first["DD_SITE"])
	}
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/dashboard", "", appKeyHeader(token)); got != http.StatusOK {
		t.Errorf("the rendered DD_APP_KEY alone, in scope: HTTP %d, want 200", got)
	}
	if got, _ := dd.do(t, http.MethodGet, "/api/v1/monitor", "", appKeyHeader(token)); got != http.StatusForbidden {
		t.Errorf("the rendered DD_APP_KEY alone, out of scope: HTTP %d, want 403", got)
	}

	// At max_ttl: a new token in the file, the old one's lease revoked.
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if env, err := current(); err == nil && env["DD_APP_KEY"] != token {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent still renders its first token 90s after it was seen, far past the role's max_ttl")
		}
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
		got, _ := dd.do(t, http.MethodGet, "/api/v1/dashboard", "", appKeyHeader(token))
		if got == http.StatusForbidden {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first token as DD-APPLICATION-KEY a minute after it was replaced: HTTP %d, want 403 once its lease ended", got)
		}
	}
}

// TestVaultAgentExec runs examples/vault-agent/exec.hcl in a real Vault
// Agent: its child process starts with working keys of one lease in its
// environment (three variables, one lease), and is started again with new
// keys when that lease reaches its max TTL, the old ones being deleted.
func TestVaultAgentExec(t *testing.T) {
	t.Parallel()
	dd, client, mount := startEngine(t)
	write(t, client, mount+"/roles/agent-role", agentRole)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "vault-token"), vault.token+"\n")

	agent := startAgent(t, dir, "vault-agent/exec.hcl", `\"datadog/creds/agent-role\"`, `\"`+mount+`/creds/agent-role\"`)
	followAgentKeys(t, dd, client, mount, "agent-role", agent.childEnv)
}

// ddEnv is what a consumer of the examples gets: DD_API_KEY, DD_APP_KEY
// and DD_SITE.
type ddEnv struct{ apiKey, appKey, site string }

// fromEnv picks the three variables of an environment, failing if one is
// missing.
func fromEnv(env map[string]string) (ddEnv, error) {
	e := ddEnv{env["DD_API_KEY"], env["DD_APP_KEY"], env["DD_SITE"]}
	noteSecret(e.apiKey, e.appKey)
	if e.apiKey == "" || e.appKey == "" || e.site == "" {
		return e, errors.New("DD_API_KEY, DD_APP_KEY or DD_SITE is missing or empty")
	}
	return e, nil
}

// parseEnvFile reads an environment file that must hold exactly the three
// variables, one NAME=value line each, as systemd and docker take them.
func parseEnvFile(data string) (ddEnv, error) {
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok || !slices.Contains([]string{"DD_API_KEY", "DD_APP_KEY", "DD_SITE"}, name) {
			noteSecret(value)
			return ddEnv{}, fmt.Errorf("line %q is not DD_API_KEY, DD_APP_KEY or DD_SITE=value", redactSecrets(line))
		}
		env[name] = value
	}
	if len(env) != 3 {
		return ddEnv{}, fmt.Errorf("%d variables, want the three", len(env))
	}
	return fromEnv(env)
}

// followAgentKeys watches the keys an agent gives its consumer through
// current: the first are working keys of the role, from exactly one lease;
// once that lease reaches its max TTL the consumer has new working keys,
// and the old ones are deleted in Datadog.
func followAgentKeys(t *testing.T, dd *datadog, client *api.Client, mount, role string, current func() (ddEnv, error)) {
	t.Helper()
	first, seen := waitAgentKeys(t, current, time.Minute)
	if first.site != "datadoghq.com" {
		t.Errorf("DD_SITE=%q, want the configured site datadoghq.com", first.site)
	}
	requireWorkingKeys(t, dd, first, []string{"/api/v1/dashboard", "/api/v1/monitor"}, []string{"/api/v2/api_keys"})
	ids, shared := requireOneLease(t, dd, client, mount, role, seen)

	var second ddEnv
	deadline := time.Now().Add(90 * time.Second)
	for {
		env, err := current()
		if err == nil && env.appKey != first.appKey {
			second = env
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent still gives its first keys (or none: %v) 90s after they were seen, far past the role's max_ttl", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	switch {
	case shared != "" && second.apiKey != first.apiKey:
		t.Errorf("the agent's next lease, in the same window of the role's shared API key, got another DD_API_KEY")
	case shared == "" && second.apiKey == first.apiKey:
		t.Errorf("the agent replaced DD_APP_KEY but kept its lease's own DD_API_KEY")
	}
	// The first lease's own keys go with it; a shared API key stays while
	// the next lease holds it.
	dd.waitKeysGone(t, time.Minute, slices.DeleteFunc(ids, func(id string) bool { return id == shared })...)
	if got := dd.get(t, "/api/v2/validate_keys", first.apiKey, first.appKey); got != http.StatusForbidden {
		t.Errorf("GET /api/v2/validate_keys with the first keys after their max TTL: HTTP %d, want 403", got)
	}
	requireWorkingKeys(t, dd, second, []string{"/api/v1/dashboard", "/api/v1/monitor"}, nil)
}

// waitAgentKeys waits until current gives keys, and returns them with the
// time they were first seen.
func waitAgentKeys(t *testing.T, current func() (ddEnv, error), timeout time.Duration) (ddEnv, time.Time) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		env, err := current()
		if err == nil {
			return env, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Datadog keys from the agent after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// requireWorkingKeys checks that the keys authenticate against Datadog and
// reach the paths allowed, and none of the paths denied.
func requireWorkingKeys(t *testing.T, dd *datadog, env ddEnv, allowed, denied []string) {
	t.Helper()
	if got := dd.get(t, "/api/v2/validate_keys", env.apiKey, env.appKey); got != http.StatusOK {
		t.Fatalf("GET /api/v2/validate_keys with the agent's keys: HTTP %d, want 200", got)
	}
	for _, path := range allowed {
		if got := dd.get(t, path, env.apiKey, env.appKey); got != http.StatusOK {
			t.Errorf("GET %s with the agent's keys: HTTP %d, want 200 (in the role's scopes)", path, got)
		}
	}
	for _, path := range denied {
		if got := dd.get(t, path, env.apiKey, env.appKey); got != http.StatusForbidden {
			t.Errorf("GET %s with the agent's keys: HTTP %d, want 403 (outside the role's scopes)", path, got)
		}
	}
}

// requireOneLease checks that the agent's first keys came from one lease:
// one lease of the role issued by the time they were seen, and one pair of
// keys in Datadog, an application key with the role's scopes and an API
// key, the lease's own or the role's shared one. It returns the keys' ids,
// and that of the API key when it is shared.
func requireOneLease(t *testing.T, dd *datadog, client *api.Client, mount, role string, seen time.Time) (ids []string, sharedAPIKey string) {
	t.Helper()
	var issued []string
	for _, id := range listLeases(t, client, mount, role) {
		lease, err := client.Sys().Lookup(id)
		if err != nil {
			noteError(err)
			continue // ended since it was listed
		}
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(lease.Data["issue_time"]))
		if err != nil {
			t.Fatalf("lease %s: issue_time %v: %v", id, lease.Data["issue_time"], err)
		}
		if !at.After(seen) {
			issued = append(issued, id)
		}
	}
	if len(issued) != 1 {
		t.Fatalf("leases %v of %s/creds/%s were issued by the time the agent's keys were seen, want exactly one", issued, mount, role)
	}

	var keys []emulator.Key
	for _, k := range dd.Keys() {
		if strings.HasPrefix(k.Name, "vault-"+role+"-") && !k.CreatedAt.After(seen) {
			keys = append(keys, k)
		}
	}
	if len(keys) != 2 || keys[0].Kind == keys[1].Kind ||
		keys[0].Name != keys[1].Name && !strings.HasPrefix(keys[0].Name, "vault-"+role+"-shared-") && !strings.HasPrefix(keys[1].Name, "vault-"+role+"-shared-") {
		t.Fatalf("Datadog holds %+v for role %s, want one application key and one API key (its own, or the role's shared one) of one credential", keys, role)
	}
	for _, k := range keys {
		ids = append(ids, k.ID)
		if k.Kind == emulator.KindAPIKey && strings.HasPrefix(k.Name, "vault-"+role+"-shared-") {
			sharedAPIKey = k.ID
		}
		if k.Kind == emulator.KindApplicationKey {
			roleData, err := client.Logical().Read(mount + "/roles/" + role)
			if err != nil || roleData == nil {
				t.Fatalf("reading role %s: %v", role, err)
			}
			var scopes []string
			for _, s := range roleData.Data["scopes"].([]any) {
				scopes = append(scopes, fmt.Sprint(s))
			}
			if !slices.Equal(k.Scopes, scopes) {
				t.Errorf("the agent's application key has scopes %v, want the role's %v", k.Scopes, scopes)
			}
		}
	}
	return ids, sharedAPIKey
}

// listLeases lists the ids of the role's outstanding leases.
func listLeases(t *testing.T, client *api.Client, mount, role string) []string {
	t.Helper()
	prefix := mount + "/creds/" + role + "/"
	list, err := client.Logical().List("sys/leases/lookup/" + prefix)
	if err != nil {
		noteError(err)
		t.Fatalf("listing leases under %s: %v", prefix, err)
	}
	var ids []string
	if list != nil {
		keys, _ := list.Data["keys"].([]any)
		for _, k := range keys {
			ids = append(ids, prefix+fmt.Sprint(k))
		}
	}
	return ids
}

// requireForbidden checks that a request was refused with HTTP 403.
func requireForbidden(t *testing.T, what string, err error) {
	t.Helper()
	noteError(err)
	var respErr *api.ResponseError
	if !errors.As(err, &respErr) || respErr.StatusCode != http.StatusForbidden {
		t.Errorf("the agent's token %s: got %v, want HTTP 403", what, err)
	}
}

// agentProcess is a `vault agent` the test started, leader of a process
// group that the children it runs join.
type agentProcess struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startAgent runs `vault agent` from dir with examples/<example>, as it is
// but for each pair of replacements (old, new; each old must be in it): the
// examples are what is tested. Vault's address comes from VAULT_ADDR; the
// agent's output goes to a file in the suite's work directory, which the
// leak check reads. At cleanup the agent is stopped, and whatever is left
// of its process group killed.
func startAgent(t *testing.T, dir, example string, replacements ...string) *agentProcess {
	t.Helper()
	config := readFile(t, filepath.Join("..", "examples", example))
	for i := 0; i+1 < len(replacements); i += 2 {
		if !strings.Contains(config, replacements[i]) {
			t.Fatalf("examples/%s has no %s to replace", example, replacements[i])
		}
		config = strings.ReplaceAll(config, replacements[i], replacements[i+1])
	}
	configPath := filepath.Join(dir, filepath.Base(example))
	writeFile(t, configPath, config)

	logFile, err := os.CreateTemp(workDir, "agent-"+mountPath(t)+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(vault.bin, "agent", "-config="+configPath)
	cmd.Dir = dir
	cmd.Env = append(vaultEnv("", ""), "VAULT_ADDR="+vault.addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	startInOwnGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting vault agent: %v", err)
	}
	a := &agentProcess{cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(30 * time.Second):
			t.Errorf("vault agent did not stop within 30s of SIGTERM (log: %s)", logFile.Name())
		}
		if err := killGroup(pgid); err != nil {
			t.Errorf("killing what is left of vault agent's process group: %v", err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			left, err := groupMembers(pgid)
			if err != nil || len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("processes %v of vault agent's group still run 10s after SIGKILL", left)
				break
			}
		}
	})
	return a
}

// childEnv returns the DD_ variables of the agent's one child process.
func (a *agentProcess) childEnv() (ddEnv, error) {
	select {
	case <-a.exited:
		return ddEnv{}, fmt.Errorf("vault agent exited: %v", a.cmd.ProcessState)
	default:
	}
	envs, err := childEnvirons(a.cmd.Process.Pid)
	if err != nil {
		return ddEnv{}, err
	}
	var withKeys []map[string]string
	for _, env := range envs {
		if _, ok := env["DD_API_KEY"]; ok {
			withKeys = append(withKeys, env)
		}
	}
	if len(withKeys) != 1 {
		return ddEnv{}, fmt.Errorf("vault agent has %d children with DD_API_KEY, want 1", len(withKeys))
	}
	return fromEnv(withKeys[0])
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
