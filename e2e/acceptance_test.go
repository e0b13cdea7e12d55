package e2e

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
)

// The acceptance suite (cmd/datadog-acceptance, make acceptance) run as a
// user runs it: the built command, as a subprocess, against the emulator
// it starts itself, and in its real-organisation mode against a second
// emulator given through exactly the variables a user sets (DD_API_KEY,
// DD_APP_KEY, DD_SITE, DD_API_URL for the base URL a real site would have,
// DD_SERVICE_ACCOUNT_ID, DD_ACCESS_TOKEN, DD_RECORD).

var acceptanceWatch = flag.Bool("acceptance.watch", false,
	"TestAcceptanceRealOrganisationMode runs the watch scenario too: two more minutes, since without the emulator's backdating an unused key is idle only by Vault's second periodic run")

var (
	acceptanceOnce sync.Once
	acceptanceBin  string
	acceptanceErr  error
)

// acceptanceBinary builds cmd/datadog-acceptance once.
func acceptanceBinary(t *testing.T) string {
	t.Helper()
	acceptanceOnce.Do(func() {
		acceptanceBin = filepath.Join(workDir, "bin", "datadog-acceptance")
		out, err := exec.Command("go", "build", "-o", acceptanceBin, "../cmd/datadog-acceptance").CombinedOutput()
		if err != nil {
			acceptanceErr = fmt.Errorf("building the acceptance suite: %w\n%s", err, out)
		}
	})
	if acceptanceErr != nil {
		t.Fatal(acceptanceErr)
	}
	return acceptanceBin
}

// acceptanceRun is the suite running as a subprocess.
type acceptanceRun struct {
	cmd            *exec.Cmd
	stdout, stderr string // files
	stateDir       string
	env            []string
	done           chan struct{}
	err            error
}

// startAcceptance runs the suite with the Datadog variables given (none:
// its own emulator), a state directory of the test's own, and args.
func startAcceptance(t *testing.T, dd map[string]string, args ...string) *acceptanceRun {
	t.Helper()
	bin := acceptanceBinary(t)
	dir := filepath.Join(workDir, "acceptance-"+regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	r := &acceptanceRun{stdout: filepath.Join(dir, "stdout"), stderr: filepath.Join(dir, "stderr"),
		stateDir: filepath.Join(dir, "state"), done: make(chan struct{})}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DD_") && !strings.HasPrefix(kv, "VAULT_") {
			r.env = append(r.env, kv)
		}
	}
	for k, v := range dd {
		r.env = append(r.env, k+"="+v)
	}
	all := append([]string{"-vault", vault.bin, "-plugin", filepath.Join(pluginDir, pluginName), "-plugin-version", pluginVersion,
		"-state-dir", r.stateDir, "-work-dir", filepath.Join(dir, "vault")}, args...)
	r.cmd = exec.Command(bin, all...)
	r.cmd.Env = r.env
	stdout, err := os.Create(r.stdout)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(r.stderr)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = stdout, stderr
	stopWithTestProcess(r.cmd)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		stdout.Close()
		stderr.Close()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// wait waits for the suite to exit and returns its exit code.
func (r *acceptanceRun) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		r.cmd.Process.Kill()
		<-r.done
		t.Fatalf("the acceptance suite did not exit within %s\n%s", timeout, r.output())
	}
	var exit *exec.ExitError
	if errors.As(r.err, &exit) {
		return exit.ExitCode()
	}
	if r.err != nil {
		t.Fatalf("running the acceptance suite: %v", r.err)
	}
	return 0
}

func (r *acceptanceRun) output() string {
	out, _ := os.ReadFile(r.stdout)
	errOut, _ := os.ReadFile(r.stderr)
	return redactSecrets(fmt.Sprintf("--- stderr ---\n%s--- stdout ---\n%s", errOut, out))
}

var runLine = regexp.MustCompile(`(?m)^run ([a-z0-9]+): `)

// waitForLine waits until the suite's progress shows a line matching re,
// and returns the run's prefix.
func (r *acceptanceRun) waitForLine(t *testing.T, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(r.stderr)
		if re.Match(data) {
			m := runLine.FindSubmatch(data)
			if m == nil {
				t.Fatalf("the suite did not print its run id\n%s", r.output())
			}
			return "vault-acc-" + string(m[1]) + "-"
		}
		select {
		case <-r.done:
			t.Fatalf("the suite exited before printing %q\n%s", re, r.output())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the suite did not print %q within %s\n%s", re, timeout, r.output())
		}
	}
}

// requirePassed checks the suite's exit and its table: every scenario
// run passed and nothing was left in Datadog.
func (r *acceptanceRun) requirePassed(t *testing.T, code int) string {
	t.Helper()
	out, _ := os.ReadFile(r.stdout)
	if code != 0 || !bytes.Contains(out, []byte("\nPASS\n")) {
		t.Fatalf("the acceptance suite exited %d\n%s", code, r.output())
	}
	if !regexp.MustCompile(`; 0 leftovers, 0 after the sweep; `).Match(out) {
		t.Errorf("the table does not say 0 leftovers\n%s", out)
	}
	if regexp.MustCompile(`(?m)^\S+\s+fail\s`).Match(out) {
		t.Errorf("a scenario failed\n%s", out)
	}
	t.Logf("the acceptance suite's table:\n%s", out)
	return string(out)
}

func TestAcceptanceAgainstTheEmulator(t *testing.T) {
	t.Parallel()
	r := startAcceptance(t, nil)
	out := r.requirePassed(t, r.wait(t, 5*time.Minute))
	// Against its own emulator every scenario runs, and every fact holds:
	// they are what the emulator does.
	if regexp.MustCompile(`(?m)^\S+\s+skipped`).MatchString(out) {
		t.Errorf("a scenario was skipped against the emulator\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "  differs  ") || strings.Contains(line, "  not checked  ") {
			t.Errorf("against the emulator a fact is not held: %s", line)
		}
	}
}

// organisation is the second emulator a test hands the suite as a real
// organisation: what the user prepared (a service account with the Admin
// role and a token of it) and what people made before the run.
type organisation struct {
	dd              *datadog
	catcher         *secretCatcher
	sa, token       string
	before          []emulator.Key
	serviceAccounts []string
}

func newOrganisation(t *testing.T) *organisation {
	t.Helper()
	dd := startDatadog(t)
	o := &organisation{dd: dd}
	o.catcher = catchSecrets(t, dd.URL)
	admin := map[string]string{"DD-API-KEY": dd.APIKey(), "DD-APPLICATION-KEY": dd.AppKey()}
	post := func(path, body string) map[string]any {
		t.Helper()
		status, out := dd.do(t, http.MethodPost, path, body, admin)
		if status != http.StatusCreated && status != http.StatusOK {
			t.Fatalf("POST %s: %d %v", path, status, out)
		}
		data, _ := out["data"].(map[string]any)
		if attrs, ok := data["attributes"].(map[string]any); ok {
			if key, _ := attrs["key"].(string); key != "" {
				noteSecret(key)
			}
		}
		return data
	}
	_, roles := dd.do(t, http.MethodGet, "/api/v2/roles?filter="+url.QueryEscape("Datadog Admin Role"), "", admin)
	adminRole := roles["data"].([]any)[0].(map[string]any)["id"].(string)
	serviceAccount := func(email string) string {
		return post("/api/v2/service_accounts", fmt.Sprintf(`{"data":{"type":"users","attributes":{"email":%q,"service_account":true},`+
			`"relationships":{"roles":{"data":[{"type":"roles","id":%q}]}}}}`, email, adminRole))["id"].(string)
	}
	expires := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	scopes := `["api_keys_delete","api_keys_read","api_keys_write","service_account_write","user_access_read","user_app_keys","dashboards_read","monitors_read"]`

	// What the user gives the suite.
	o.sa = serviceAccount("ci-acceptance@example.com")
	token := post("/api/v2/service_accounts/"+o.sa+"/access_tokens",
		fmt.Sprintf(`{"data":{"type":"service_access_tokens","attributes":{"name":"ci acceptance token","scopes":%s,"expires_at":%q}}}`, scopes, expires))
	o.token = token["attributes"].(map[string]any)["key"].(string)
	post("/api/v2/service_accounts/"+o.sa+"/application_keys", `{"data":{"type":"application_keys","attributes":{"name":"ci-acceptance-key"}}}`)

	// What others made, some named like a run of the suite (another run's),
	// some like the engine's: none of it is the run's to touch.
	other := serviceAccount("vault-acc-zzzzzz-sa@example.com")
	o.serviceAccounts = []string{o.sa, other}
	post("/api/v2/api_keys", `{"data":{"type":"api_keys","attributes":{"name":"vault-acc-zzzzzz-other-run"}}}`)
	post("/api/v2/api_keys", `{"data":{"type":"api_keys","attributes":{"name":"vault-team-x-shared-1"}}}`)
	post("/api/v2/current_user/application_keys", `{"data":{"type":"application_keys","attributes":{"name":"vault-acc-zzzzzz-root-main"}}}`)
	post("/api/v2/current_user/application_keys", `{"data":{"type":"application_keys","attributes":{"name":"vault-other-team-ci"}}}`)
	post("/api/v2/personal_access_tokens", fmt.Sprintf(`{"data":{"type":"personal_access_tokens","attributes":{"name":"vault-acc-zzzzzz-pat","scopes":["dashboards_read"],"expires_at":%q}}}`, expires))
	post("/api/v2/service_accounts/"+other+"/application_keys", `{"data":{"type":"application_keys","attributes":{"name":"vault-acc-zzzzzz-sa-key"}}}`)
	post("/api/v2/service_accounts/"+other+"/access_tokens", `{"data":{"type":"service_access_tokens","attributes":{"name":"vault-acc-zzzzzz-sat","scopes":["dashboards_read"]}}}`)
	o.before = dd.Keys()
	return o
}

// env is what a user sets for this organisation.
func (o *organisation) env() map[string]string {
	return map[string]string{
		"DD_API_KEY": o.dd.APIKey(), "DD_APP_KEY": o.dd.AppKey(), "DD_SITE": "datadoghq.com",
		"DD_API_URL":            o.catcher.URL,
		"DD_SERVICE_ACCOUNT_ID": o.sa, "DD_ACCESS_TOKEN": o.token,
	}
}

// requireClean checks that nothing of the run is left and that nothing
// else was touched.
func (o *organisation) requireClean(t *testing.T, prefix string) {
	t.Helper()
	live := map[string]bool{}
	for _, k := range o.dd.Keys() {
		live[k.ID] = true
		if strings.HasPrefix(k.Name, prefix) || strings.HasPrefix(k.Name, "vault-root-") {
			t.Errorf("%s %s (%s) of the run is still in Datadog", k.Kind, k.ID, k.Name)
		}
	}
	for _, k := range o.before {
		if !live[k.ID] {
			t.Errorf("%s %s (%s), made before the run, is gone", k.Kind, k.ID, k.Name)
		}
	}
	admin := map[string]string{"DD-API-KEY": o.dd.APIKey(), "DD-APPLICATION-KEY": o.dd.AppKey()}
	for _, sa := range o.serviceAccounts {
		_, user := o.dd.do(t, http.MethodGet, "/api/v2/users/"+sa, "", admin)
		if attrs, _ := user["data"].(map[string]any)["attributes"].(map[string]any); attrs["disabled"] != false {
			t.Errorf("service account %s, made before the run, is disabled", sa)
		}
	}
	_, users := o.dd.do(t, http.MethodGet, "/api/v2/users?filter="+url.QueryEscape(prefix), "", admin)
	for _, u := range users["data"].([]any) {
		if attrs := u.(map[string]any)["attributes"].(map[string]any); attrs["disabled"] == false {
			t.Errorf("service account %v of the run is still enabled", attrs["email"])
		}
	}
}

// secretCatcher stands between the suite and an emulator and notes every
// secret that crosses it: the keys each call is made with, and every key
// an answer holds. Those are all the secrets the run saw.
type secretCatcher struct {
	URL     string
	mu      sync.Mutex
	secrets map[string]bool
}

var keyField = regexp.MustCompile(`"key":"([^"]+)"`)

func catchSecrets(t *testing.T, upstream string) *secretCatcher {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	c := &secretCatcher{secrets: map[string]bool{}}
	note := func(s string) {
		if s == "" {
			return
		}
		c.mu.Lock()
		c.secrets[s] = true
		c.mu.Unlock()
		noteSecret(s)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		for _, m := range keyField.FindAllSubmatch(body, -1) {
			note(string(m[1]))
		}
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		note(r.Header.Get("DD-API-KEY"))
		note(r.Header.Get("DD-APPLICATION-KEY"))
		note(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		rp.ServeHTTP(w, r)
	})}
	ln, err := listenLoopback()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c.URL = "http://" + ln.Addr().String()
	return c
}

func listenLoopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func (c *secretCatcher) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for s := range c.secrets {
		out = append(out, s)
	}
	return out
}

// TestAcceptanceRealOrganisationMode runs the suite as a user with a real
// organisation would, recording, against a second emulator; the recording
// must replay against the emulator and hold no secret the run saw.
func TestAcceptanceRealOrganisationMode(t *testing.T) {
	t.Parallel()
	org := newOrganisation(t)
	// A real organisation answers every call with its rate limits: these
	// are tight enough that the run meets them.
	for group, limit := range map[string]int{"api_keys": 10, "application_keys": 20, "access_tokens": 20, "users": 20} {
		if err := org.dd.SetRateLimit(group, emulator.RateLimit{Limit: limit, Period: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	rec := filepath.Join(workDir, "acceptance-recording")
	env := org.env()
	env["DD_RECORD"] = rec
	var args []string
	if !*acceptanceWatch {
		args = append(args, "-skip", "watch")
	}
	r := startAcceptance(t, env, args...)
	prefix := r.waitForLine(t, runLine, time.Minute)
	out := r.requirePassed(t, r.wait(t, 6*time.Minute))
	for _, want := range []string{"against the Datadog organisation of DD_API_KEY (site datadoghq.com) at " + org.catcher.URL + " (DD_API_URL)",
		"config/token-root  ", "rotate-root/token-root  ", "creds/service_account_application_key  ",
		"rate limits seen: access_tokens 20/10s (lowest remaining ", "api_keys 10/10s (lowest remaining "} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^\S+\s+skipped: set`).MatchString(out) {
		t.Errorf("a scenario was skipped although every variable was set\n%s", out)
	}
	org.requireClean(t, prefix)

	// The recording replays against the emulator's replay machinery.
	stats := emulatortest.ReplayRecording(t, rec)
	t.Logf("replayed the recording: %s", stats)
	if stats.Replayed < 100 {
		t.Errorf("only %d interactions replayed", stats.Replayed)
	}

	// It holds none of the secrets the run saw.
	secrets := org.catcher.all()
	if len(secrets) < 20 {
		t.Errorf("only %d secrets crossed the run's path to Datadog: the check proves little", len(secrets))
	}
	found, scanned, err := findSecrets(secrets, rec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Errorf("the recording leaks: %s", f)
	}
	if len(scanned) < 5 {
		t.Errorf("the recording has only %d files", len(scanned))
	}
	t.Logf("%d secrets searched for in %d recorded files: none found", len(secrets), len(scanned))
}

// holdArgs stop the suite after a rotation, with every kind of
// credential live (no revoke scenario) and both mounts' roots in place:
// the token root the suite made, and the application key the rotation made
// (named after the mount's marker, not the run).
var holdArgs = []string{"-skip", "watch,revoke", "-hold-after", "rotate-root/app-key"}

var holding = regexp.MustCompile(`(?m)^holding after rotate-root/app-key`)

// requireRunObjects checks that the held run has objects in Datadog.
func (o *organisation) requireRunObjects(t *testing.T, prefix string) {
	t.Helper()
	var named, roots int
	for _, k := range o.dd.Keys() {
		switch {
		case strings.HasPrefix(k.Name, prefix):
			named++
		case strings.HasPrefix(k.Name, "vault-root-"):
			roots++
		}
	}
	if named < 8 || roots != 1 {
		t.Fatalf("the held run has %d objects named %s… and %d root keys in Datadog; want at least 8 and 1", named, prefix, roots)
	}
	t.Logf("held with %d objects named %s… and %d root key in Datadog", named, prefix, roots)
}

// TestAcceptanceInterrupted: Ctrl-C in the middle of a run cleans up
// everything the run made, and nothing else.
func TestAcceptanceInterrupted(t *testing.T) {
	t.Parallel()
	org := newOrganisation(t)
	r := startAcceptance(t, org.env(), holdArgs...)
	prefix := r.waitForLine(t, holding, 3*time.Minute)
	org.requireRunObjects(t, prefix)
	r.cmd.Process.Signal(os.Interrupt)
	if code := r.wait(t, 3*time.Minute); code != 130 {
		t.Errorf("interrupted, the suite exited %d, want 130\n%s", code, r.output())
	}
	out, _ := os.ReadFile(r.stdout)
	if !bytes.Contains(out, []byte("INTERRUPTED")) || !bytes.Contains(out, []byte("0 after the sweep")) {
		t.Errorf("the interrupted run's table does not say it cleaned up\n%s", r.output())
	}
	org.requireClean(t, prefix)
	if entries, _ := os.ReadDir(r.stateDir); len(entries) != 0 {
		t.Errorf("the run cleaned up, but left its journal for a sweep: %v", entries)
	}
}

// TestAcceptanceKilledThenSwept: a run killed outright (SIGKILL) leaves
// its objects; make acceptance-sweep RUN=<prefix> deletes them all (the
// root key of a rotation too, through the run's journal), and nothing else.
func TestAcceptanceKilledThenSwept(t *testing.T) {
	t.Parallel()
	org := newOrganisation(t)
	r := startAcceptance(t, org.env(), holdArgs...)
	prefix := r.waitForLine(t, holding, 3*time.Minute)
	org.requireRunObjects(t, prefix)
	r.cmd.Process.Signal(syscall.SIGKILL)
	r.wait(t, time.Minute)
	// The run is gone; its Vault follows it (the kernel sends it SIGTERM).
	m := regexp.MustCompile(`(?m)^Vault: (http://127\.0\.0\.1:[0-9]+) `).FindSubmatch([]byte(r.output()))
	if m == nil {
		t.Fatalf("the suite did not say where its Vault listens\n%s", r.output())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(string(m[1]) + "/v1/sys/health")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the killed run's Vault at %s still answers", m[1])
		}
		time.Sleep(200 * time.Millisecond)
	}
	org.requireRunObjects(t, prefix)

	// As a user would: make acceptance-sweep, with the variables of the run.
	sweep := exec.Command("make", "-s", "-C", "..", "acceptance-sweep", "RUN="+prefix)
	sweep.Env = append(slices.Clone(r.env), "ACCEPTANCE_STATE_DIR="+r.stateDir)
	out, err := sweep.CombinedOutput()
	if err != nil {
		t.Fatalf("the sweep failed: %v\n%s", err, redactSecrets(string(out)))
	}
	t.Logf("sweep:\n%s", redactSecrets(string(out)))
	org.requireClean(t, prefix)
	if _, err := os.Stat(filepath.Join(r.stateDir, strings.TrimSuffix(strings.TrimPrefix(prefix, "vault-acc-"), "-")+".json")); !os.IsNotExist(err) {
		t.Errorf("the run's journal is still there after a clean sweep (%v)", err)
	}
}
