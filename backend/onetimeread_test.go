package backend

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// exchange is one call of the engine to Datadog, as a proxy saw it.
type exchange struct {
	call    string   // method, path with ids replaced, query parameter names, status
	created bool     // a create Datadog accepted
	secrets []string // the key secrets the answer showed
}

// trafficLog records the engine's calls to Datadog.
type trafficLog struct {
	mu        sync.Mutex
	exchanges []exchange
}

var idInPath = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// recordTraffic puts a proxy between the engine and the emulator that logs
// the engine's calls (those with its User-Agent) and the secrets in each
// answer. Configure the engine after it.
func (env *testEnv) recordTraffic(t *testing.T) *trafficLog {
	t.Helper()
	target, log := env.url, &trafficLog{}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)

		if !strings.HasPrefix(r.UserAgent(), "vault-plugin-secrets-datadog/") {
			return
		}
		var query []string
		for k := range r.URL.Query() {
			query = append(query, k)
		}
		sort.Strings(query)
		ex := exchange{
			call:    r.Method + " " + idInPath.ReplaceAllString(r.URL.Path, "{id}") + "?" + strings.Join(query, "&") + " " + http.StatusText(resp.StatusCode),
			created: r.Method == http.MethodPost && resp.StatusCode == http.StatusCreated,
			secrets: secretsIn(body),
		}
		log.mu.Lock()
		log.exchanges = append(log.exchanges, ex)
		log.mu.Unlock()
	}))
	t.Cleanup(proxy.Close)
	env.url = proxy.URL
	return log
}

// secretsIn returns the key secrets ("key" attributes) of a JSON:API answer.
func secretsIn(body []byte) []string {
	type object struct {
		Attributes struct {
			Key string `json:"key"`
		} `json:"attributes"`
	}
	var one struct {
		Data object `json:"data"`
	}
	var many struct {
		Data []object `json:"data"`
	}
	var out []string
	if json.Unmarshal(body, &one) == nil && one.Data.Attributes.Key != "" {
		out = append(out, one.Data.Attributes.Key)
	}
	if json.Unmarshal(body, &many) == nil {
		for _, o := range many.Data {
			if o.Attributes.Key != "" {
				out = append(out, o.Attributes.Key)
			}
		}
	}
	return out
}

func (l *trafficLog) snapshot() []exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.exchanges)
}

// oneTimeReadRun is what the engine did and handed out in one organisation.
type oneTimeReadRun struct {
	calls        []string        // every call, in order
	handedOut    []string        // secrets the engine returned or stored
	fromCreate   map[string]bool // secrets of create answers
	readBack     []string        // application key secrets answered to reads and edits
	answerFields [][]string      // the fields of each Vault answer, in order
}

// runEngineFlows drives config, creds of three kinds with renewals, watch
// runs and revocations, and a rotation of the root key, against an organisation in
// One-Time Read mode or not.
func runEngineFlows(t *testing.T, oneTimeRead bool) oneTimeReadRun {
	env := newTestEnv(t)
	env.emu.SetOneTimeRead(oneTimeRead)
	sa := env.createServiceAccount(t)
	traffic := env.recordTraffic(t)
	env.configure(t)

	run := oneTimeReadRun{fromCreate: map[string]bool{}}
	answer := func(resp *logical.Response) {
		var fields []string
		for f := range resp.Data {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		run.answerFields = append(run.answerFields, fields)
	}
	roles := map[string]map[string]interface{}{
		"app": {"scopes": "dashboards_read", "api_key_mode": "dynamic"},
		"sa":  {"credential_type": "service_account_application_key", "service_account_id": sa, "scopes": "dashboards_read", "api_key_mode": "dynamic"},
		"pat": {"credential_type": "personal_access_token", "scopes": "dashboards_read"},
	}
	issue := func(role string) {
		resp := env.mustDo(t, logical.ReadOperation, "creds/"+role, nil)
		answer(resp)
		for _, field := range []string{"application_key", "api_key", "access_token"} {
			if s, _ := resp.Data[field].(string); s != "" {
				run.handedOut = append(run.handedOut, s)
			}
		}
		renewed, err := env.renew(t, resp)
		if err != nil || renewed.IsError() {
			t.Fatalf("renewing creds/%s: %v %v", role, err, renewed)
		}
		if status := env.watchNow(t); status["checked"] != 1 || status["failed"] != 0 {
			t.Fatalf("watch run over creds/%s: %v", role, status)
		}
		if _, err := env.revoke(t, resp); err != nil {
			t.Fatalf("revoking creds/%s: %v", role, err)
		}
	}
	for _, role := range []string{"app", "sa", "pat"} {
		env.writeRole(t, role, roles[role])
		issue(role)
	}
	answer(env.mustDo(t, logical.UpdateOperation, "config/rotate-root", nil))
	run.handedOut = append(run.handedOut, env.storedConfig(t).AppKey)
	issue("app")

	for _, ex := range traffic.snapshot() {
		run.calls = append(run.calls, ex.call)
		for _, s := range ex.secrets {
			switch {
			case ex.created:
				run.fromCreate[s] = true
			case strings.HasPrefix(s, "ddapp_"):
				run.readBack = append(run.readBack, ex.call)
			}
		}
	}
	for _, k := range env.issuedKeys() {
		if !strings.HasPrefix(k.Name, rootNamePrefix(env.b.marker)) { // the root key stays
			t.Errorf("%s %s left in Datadog", k.Kind, k.ID)
		}
	}
	return run
}

// TestEngineNeverReadsASecretBack runs the same flows in an organisation
// in One-Time Read mode and in one without it, where Datadog answers the
// engine's look-ups of its own application keys with their secrets: every
// secret the engine hands out or stores comes from the answer to its
// create, and the engine makes the same calls and gives the same answers
// in both.
func TestEngineNeverReadsASecretBack(t *testing.T) {
	withMode := runEngineFlows(t, true)
	without := runEngineFlows(t, false)

	for name, run := range map[string]oneTimeReadRun{"One-Time Read": withMode, "no One-Time Read": without} {
		for i, s := range run.handedOut {
			if !run.fromCreate[s] {
				t.Errorf("%s: secret #%d the engine handed out or stored (…%s) is not from a create answer", name, i, last4(s))
			}
		}
		if len(run.handedOut) != 8 { // app (2), sa (2), pat, the new root, app again (2)
			t.Errorf("%s: %d secrets handed out, want 8", name, len(run.handedOut))
		}
	}
	if len(withMode.readBack) != 0 {
		t.Errorf("in One-Time Read mode, Datadog showed application key secrets to %v", withMode.readBack)
	}
	// The flows did give the engine the chance to read a secret back.
	if len(without.readBack) == 0 {
		t.Error("without One-Time Read mode, no look-up answer showed an application key's secret: the test proves nothing")
	}
	// A lease's keys go to Datadog together, in no set order: compare the
	// calls made, not their order.
	slices.Sort(withMode.calls)
	slices.Sort(without.calls)
	if !slices.Equal(withMode.calls, without.calls) {
		t.Errorf("the engine's calls differ between the modes:\nOne-Time Read:    %v\nno One-Time Read: %v", withMode.calls, without.calls)
	}
	if !slices.EqualFunc(withMode.answerFields, without.answerFields, slices.Equal[[]string]) {
		t.Errorf("the engine's answers differ between the modes: %v / %v", withMode.answerFields, without.answerFields)
	}
	t.Logf("%d calls in each mode; without One-Time Read, %d answers showed an application key's secret: %v",
		len(without.calls), len(without.readBack), without.readBack)
}
