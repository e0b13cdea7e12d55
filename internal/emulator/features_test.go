package emulator_test

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// minScenariosRun guards the feature scenarios the emulator passes against
// shrinking unnoticed.
const minScenariosRun = 92

// notRunnable lists scenarios the runner could run but that cannot hold,
// with the reason. Most are generated "Bad Request" scenarios whose
// example request has nothing Datadog would reject.
var notRunnable = map[string]string{
	`Create an API key returns "Bad Request" response`:                                  "the example body is valid: nothing to reject",
	`Create an application key for current user returns "Bad Request" response`:         "the example body is valid: nothing to reject",
	`Create an application key for this service account returns "Bad Request" response`: "the example body is valid; the only flaw, the unknown service account, is a 404",
	`Get all API keys returns "Bad Request" response`:                                   "no parameters: nothing to reject",
	`Get all access tokens returns "Bad Request" response`:                              "no parameters: nothing to reject",
	`Get all application keys owned by current user returns "Bad Request" response`:     "no parameters: nothing to reject",
	`Get all application keys owned by current user returns "Not Found" response`:       "no parameters: the caller's own list always exists",
	`Get all application keys returns "Bad Request" response`:                           "no parameters: nothing to reject",
	`Get all application keys returns "Not Found" response`:                             "no parameters: the organisation's list always exists",
	`Get an application key returns "Bad Request" response`:                             "the id is merely unknown: 404, as the recorded Not Found scenario shows for a malformed id",
	`List access tokens for a service account returns "Bad Request" response`:           "no parameters but the unknown service account, a 404",
	`List application keys for this service account returns "Bad Request" response`:     "no parameters but the unknown service account, a 404",
	`List all users returns "Bad Request" response`:                                     "no parameters: nothing to reject",
	`List permissions returns "Bad Request" response`:                                   "no parameters: nothing to reject",
	`Update a user returns "Bad Request" response`:                                      "its only flaw, a body id unlike the path's, is answered 422 (the recorded \"Bad User ID in Request\" scenario)",
	`Create role returns "OK" response`:                                                 "same body as the Bad Request scenario: a permission without an id is refused",
}

// realObjects lists scenarios whose request names an unknown object
// ("REPLACE.ME") and so would only ever get a 404: they run with a real one
// instead, so that the flaw they are about is what is judged. Each maps a
// parameter to the fixture path that replaces its value.
var realObjects = map[string]map[string]string{
	`Create an access token for a service account returns "Bad Request" response`:  {"service_account_id": "service_account_user.data.id"}, // expires_at in the past
	`Edit an API key returns "Bad Request" response`:                               {"api_key_id": "api_key.data.id"},                      // body id unlike the path's
	`Edit an application key owned by current user returns "Bad Request" response`: {"app_key_id": "application_key.data.id"},
	`Edit an application key returns "Bad Request" response`:                       {"app_key_id": "application_key.data.id"},
	`Edit an application key for this service account returns "Bad Request" response`: {
		"service_account_id": "service_account_user.data.id", "app_key_id": "service_account_application_key.data.id"},
	`Update a personal access token returns "Bad Request" response`: {"token_id": "personal_access_token.data.id"},
	`Update an access token for a service account returns "Bad Request" response`: {
		"service_account_id": "service_account_user.data.id", "token_id": "service_account_access_token.data.id"},
	`Update a user returns "Unprocessable Entity" response`: {"user_id": "user.data.id"},
	`Update a role returns "Unprocessable Entity" response`: {"role_id": "role.data.id"},
}

// fixture is how the runner makes an object a scenario's "Given there is a
// valid X" asks for, after the client's own test fixtures.
type fixture struct {
	operation string
	params    map[string]string // parameter -> fixture path
	body      string
	pick      string // the part of the answer that is the fixture; "" for all of it
}

var fixtures = map[string]fixture{
	"user": {operation: "CreateUser",
		body: `{"data":{"type":"users","attributes":{"name":"Datadog API Client Go","email":"{{ unique_lower }}@datadoghq.com","title":"user title"}}}`},
	"role": {operation: "CreateRole", body: `{"data":{"type":"roles","attributes":{"name":"{{ unique }}"}}}`},
	"service_account_user": {operation: "CreateServiceAccount",
		body: `{"data":{"type":"users","attributes":{"email":"{{ unique_lower }}@datadoghq.com","service_account":true,"title":"user title"}}}`},
	"api_key":         {operation: "CreateAPIKey", body: `{"data":{"type":"api_keys","attributes":{"name":"{{ unique }}"}}}`},
	"application_key": {operation: "CreateCurrentUserApplicationKey", body: `{"data":{"type":"application_keys","attributes":{"name":"{{ unique }}"}}}`},
	"personal_access_token": {operation: "CreatePersonalAccessToken",
		body: `{"data":{"type":"personal_access_tokens","attributes":{"name":"{{ unique }}","scopes":["dashboards_read"],"expires_at":"{{ timeISO('now+365d') }}"}}}`},
	"service_account_application_key": {operation: "CreateServiceAccountApplicationKey",
		params: map[string]string{"service_account_id": "service_account_user.data.id"},
		body:   `{"data":{"type":"application_keys","attributes":{"name":"{{ unique }}"}}}`},
	"service_account_access_token": {operation: "CreateServiceAccountAccessToken",
		params: map[string]string{"service_account_id": "service_account_user.data.id"},
		body:   `{"data":{"type":"service_access_tokens","attributes":{"name":"{{ unique }}","scopes":["dashboards_read"]}}}`},
	"permission": {operation: "ListPermissions", pick: "data.0"},
}

// scenario is a feature file's scenario, as far as the runner reads it.
type scenario struct {
	feature, title string
	version        string          // API version, from the feature's @endpoint tags
	auth           map[string]bool // "apiKeyAuth", "appKeyAuth" given valid
	givens         []string        // fixtures, in order
	operation      string
	params         [][2]string // name, source: `"literal"`, a number, or a fixture path
	body           string
	status         int
	unsupported    string // a step the runner cannot perform
}

var (
	stepAuth        = regexp.MustCompile(`^a valid "(\w+)" key in the system$`)
	stepRequest     = regexp.MustCompile(`^new "(\w+)" request$`)
	stepParamFrom   = regexp.MustCompile(`^request contains "([^"]+)" parameter from "([^"]+)"$`)
	stepParamValue  = regexp.MustCompile(`^request contains "([^"]+)" parameter with value (.+)$`)
	stepBody        = regexp.MustCompile(`^body with value (.+)$`)
	stepFixture     = regexp.MustCompile(`^there is a valid "(\w+)" (?:in the system|for "\w+")$`)
	stepStatus      = regexp.MustCompile(`^the response status is (\d{3})\b`)
	stepIgnored     = regexp.MustCompile(`^(an instance of "\w+" API|operation "\w+" enabled|the request (with pagination )?is sent|the response .*)$`)
	stepKeyword     = regexp.MustCompile(`^(Given|And|When|Then|But) `)
	endpointVersion = regexp.MustCompile(`@endpoint\([\w-]+-(v\d)\)`)
)

// parseFeature reads the scenarios of one feature file. Background steps
// apply to every scenario.
func parseFeature(t *testing.T, path string) []*scenario {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	feature := strings.TrimSuffix(filepath.Base(path), ".feature")
	background := &scenario{auth: map[string]bool{}}
	current, version := background, ""
	var out []*scenario
	scanner := bufio.NewScanner(f)
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if m := endpointVersion.FindStringSubmatch(line); m != nil && version == "" {
			version = m[1]
		}
		if title, isScenario := strings.CutPrefix(line, "Scenario: "); isScenario {
			current = &scenario{feature: feature, title: title, version: version, auth: map[string]bool{}}
			for k := range background.auth {
				current.auth[k] = true
			}
			current.givens = slices.Clone(background.givens)
			current.operation = background.operation
			out = append(out, current)
			continue
		}
		keyword := stepKeyword.FindString(line)
		if keyword == "" {
			continue
		}
		step := line[len(keyword):]
		switch {
		case stepAuth.MatchString(step):
			current.auth[stepAuth.FindStringSubmatch(step)[1]] = true
		case stepRequest.MatchString(step):
			current.operation = stepRequest.FindStringSubmatch(step)[1]
		case stepParamFrom.MatchString(step):
			m := stepParamFrom.FindStringSubmatch(step)
			current.params = append(current.params, [2]string{m[1], m[2]})
		case stepParamValue.MatchString(step):
			m := stepParamValue.FindStringSubmatch(step)
			current.params = append(current.params, [2]string{m[1], m[2]})
		case stepBody.MatchString(step):
			current.body = stepBody.FindStringSubmatch(step)[1]
		case stepFixture.MatchString(step):
			current.givens = append(current.givens, stepFixture.FindStringSubmatch(step)[1])
		case stepStatus.MatchString(step):
			current.status, _ = strconv.Atoi(stepStatus.FindStringSubmatch(step)[1])
		case stepIgnored.MatchString(step):
		default:
			current.unsupported = step
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFeatureScenarios sends the request of every scenario in the recorded
// feature files whose operations the emulator answers, and expects the
// status the scenario names: the error cases ("Bad Request", "Not Found",
// "Conflict", ...) have no cassette. Bodies are the feature files' own.
func TestFeatureScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(recordingsDir(), "features", "*.feature"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no feature files in %s (set DATADOG_RECORDINGS to the datadog-recordings directory): %v", recordingsDir(), err)
	}
	endpoints := map[string]bool{} // "METHOD path"
	for _, ep := range emulator.New(emulator.Options{}).Endpoints() {
		endpoints[ep.Method+" "+ep.Path] = true
	}

	run, skipped := 0, map[string]string{} // scenario -> reason
	seen := map[string]bool{}
	for _, file := range files {
		for _, sc := range parseFeature(t, file) {
			name := sc.feature + ": " + sc.title
			seen[sc.title] = true
			ops := []string{sc.operation}
			for _, g := range sc.givens {
				ops = append(ops, fixtures[g].operation)
			}
			for param, source := range realObjects[sc.title] {
				ops = append(ops, fixtures[strings.Split(source, ".")[0]].operation)
				sc.params = slices.DeleteFunc(sc.params, func(p [2]string) bool { return p[0] == param })
				sc.params = append(sc.params, [2]string{param, source})
			}
			switch reason, listed := notRunnable[sc.title]; {
			case listed:
				skipped[name] = reason
				continue
			case sc.unsupported != "":
				skipped[name] = fmt.Sprintf("step %q is not supported", sc.unsupported)
				continue
			case sc.status == 0:
				skipped[name] = "no expected status"
				continue
			}
			emulated := func(op string) bool {
				method, path, found := permissions.OperationByID(sc.version, op)
				return found && endpoints[method+" "+path]
			}
			if i := slices.IndexFunc(ops, func(op string) bool { return !emulated(op) }); i >= 0 {
				skipped[name] = fmt.Sprintf("operation %q is not emulated", cmp.Or(ops[i], "(fixture unknown to the runner)"))
				continue
			}
			run++
			t.Run(sc.feature+"/"+sc.title, func(t *testing.T) { runScenario(t, sc) })
		}
	}
	for title := range notRunnable {
		if !seen[title] {
			t.Errorf("notRunnable lists %q, which no feature file has", title)
		}
	}
	for title := range realObjects {
		if !seen[title] {
			t.Errorf("realObjects lists %q, which no feature file has", title)
		}
	}
	var report []string
	for name, reason := range skipped {
		report = append(report, name+": "+reason)
	}
	slices.Sort(report)
	t.Logf("feature scenarios: %d run, %d skipped:\n\t%s", run, len(skipped), strings.Join(report, "\n\t"))
	fmt.Printf("feature scenarios: %d run, %d skipped\n", run, len(skipped))
	if run < minScenariosRun {
		t.Errorf("only %d scenarios run, want at least %d", run, minScenariosRun)
	}
}

// runScenario makes the scenario's fixtures, sends its request on a fresh
// emulator and checks the status.
func runScenario(t *testing.T, sc *scenario) {
	s := newTestServer(t, emulator.Options{})
	r := &scenarioRun{t: t, s: s, objects: map[string]any{},
		unique: "Test-" + regexp.MustCompile(`\W+`).ReplaceAllString(sc.title, "_") + "-" + strconv.FormatInt(time.Now().Unix(), 10)}
	need := slices.Clone(sc.givens)
	for _, p := range sc.params { // objects the real-object parameters need
		if name := strings.Split(p[1], ".")[0]; fixtures[name].operation != "" && !slices.Contains(need, name) {
			if parent := strings.Split(fixtures[name].params["service_account_id"], ".")[0]; parent != "" && !slices.Contains(need, parent) {
				need = append(need, parent)
			}
			need = append(need, name)
		}
	}
	for _, name := range need {
		fx := fixtures[name]
		params := [][2]string{}
		for p, source := range fx.params {
			params = append(params, [2]string{p, source})
		}
		status, body := r.send(sc.version, fx.operation, params, fx.body, allKeys)
		if status >= 300 {
			t.Fatalf("fixture %s: %s answered %d %v", name, fx.operation, status, body)
		}
		if fx.pick != "" {
			body = get(body, fx.pick)
		}
		r.objects[name] = body
	}
	status, body := r.send(sc.version, sc.operation, sc.params, sc.body, sc.auth)
	if status != sc.status {
		t.Errorf("%s answered %d %v, want %d", sc.operation, status, body, sc.status)
	}
}

var allKeys = map[string]bool{"apiKeyAuth": true, "appKeyAuth": true}

type scenarioRun struct {
	t       *testing.T
	s       *testServer
	unique  string
	objects map[string]any // fixtures by name
}

// send calls an operation by id, with the seeded keys that auth names
// valid, parameters resolved and the body's templates filled in.
func (r *scenarioRun) send(version, operation string, params [][2]string, body string, auth map[string]bool) (int, any) {
	method, path, ok := permissions.OperationByID(version, operation)
	if !ok {
		r.t.Fatalf("no %s operation %q in the specification", version, operation)
	}
	query := url.Values{}
	for _, p := range params {
		value := r.resolve(p[1])
		if placeholder := "{" + p[0] + "}"; strings.Contains(path, placeholder) {
			path = strings.ReplaceAll(path, placeholder, url.PathEscape(value))
		} else {
			query.Add(p[0], value)
		}
	}
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	apiKey, appKey := "", ""
	if auth["apiKeyAuth"] {
		apiKey = r.s.APIKey()
	}
	if auth["appKeyAuth"] {
		appKey = r.s.AppKey()
	}
	status, decoded, _ := r.s.send(r.t, keys(apiKey, appKey), method, path, r.fill(body))
	return status, decoded
}

// resolve reads a parameter's source: a quoted or numeric literal, a
// fixture path, or anything else (such as "REPLACE.ME") as itself.
func (r *scenarioRun) resolve(source string) string {
	if unquoted, err := strconv.Unquote(source); err == nil {
		return unquoted
	}
	name, rest, _ := strings.Cut(source, ".")
	if obj, found := r.objects[name]; found {
		switch v := get(obj, rest).(type) {
		case string:
			return v
		case nil:
		default:
			raw, _ := json.Marshal(v)
			return string(raw)
		}
	}
	return source
}

var template = regexp.MustCompile(`\{\{\s*(.*?)\s*\}\}`)
var timeISO = regexp.MustCompile(`^timeISO\('now([+-]\d+)([dhms])'\)$`)

// fill replaces a body's {{ }} templates: unique names, times, and paths
// into fixtures.
func (r *scenarioRun) fill(body string) string {
	return template.ReplaceAllStringFunc(body, func(match string) string {
		expr := template.FindStringSubmatch(match)[1]
		switch {
		case expr == "unique":
			return r.unique
		case expr == "unique_lower":
			return strings.ToLower(r.unique)
		case timeISO.MatchString(expr):
			m := timeISO.FindStringSubmatch(expr)
			n, _ := strconv.Atoi(m[1])
			unit := map[string]time.Duration{"d": 24 * time.Hour, "h": time.Hour, "m": time.Minute, "s": time.Second}[m[2]]
			return time.Now().Add(time.Duration(n) * unit).UTC().Format(time.RFC3339Nano)
		}
		return r.resolve(expr)
	})
}
