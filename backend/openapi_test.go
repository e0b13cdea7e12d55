package backend

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// openAPIDocument is the engine's OpenAPI document, as Vault asks a plugin
// for it (a help request on the mount's root).
func (env *testEnv) openAPIDocument(t *testing.T) *framework.OASDocument {
	t.Helper()
	// The document names the Vault version, which the test's system view
	// leaves unset.
	env.b.System().(*logical.StaticSystemView).PluginEnvironment = &logical.PluginEnvironment{VaultVersion: "test"}
	resp, err := env.b.HandleRequest(t.Context(), &logical.Request{Operation: logical.HelpOperation, Storage: env.storage})
	if err != nil {
		t.Fatal(err)
	}
	doc, ok := resp.Data["openapi"].(*framework.OASDocument)
	if !ok || len(doc.Paths) == 0 {
		t.Fatalf("the root help has no OpenAPI document: %#v", resp.Data["openapi"])
	}
	return doc
}

// oasOperation is one operation of the document, keyed "METHOD /path", with
// LIST for a list (Vault's GET with list=true).
type oasOperation struct {
	key  string
	path string
	*framework.OASOperation
}

func oasOperations(doc *framework.OASDocument) map[string]oasOperation {
	ops := map[string]oasOperation{}
	for path, item := range doc.Paths {
		for method, op := range map[string]*framework.OASOperation{
			"GET": item.Get, "POST": item.Post, "PATCH": item.Patch, "DELETE": item.Delete,
		} {
			if op == nil {
				continue
			}
			if method == "GET" && slices.ContainsFunc(op.Parameters, func(p framework.OASParameter) bool { return p.Name == "list" && p.In == "query" }) {
				method = "LIST"
			}
			key := method + " " + path
			ops[key] = oasOperation{key: key, path: path, OASOperation: op}
		}
	}
	return ops
}

// responseFields returns the properties of a response's schema, nil when it
// declares no body.
func responseFields(t *testing.T, doc *framework.OASDocument, resp *framework.OASResponse) map[string]*framework.OASSchema {
	t.Helper()
	media := resp.Content["application/json"]
	if media == nil || media.Schema == nil {
		return nil
	}
	schema := media.Schema
	if name, ok := strings.CutPrefix(schema.Ref, "#/components/schemas/"); ok {
		schema = doc.Components.Schemas[name]
	}
	if schema == nil || schema.Ref != "" || len(schema.Properties) == 0 {
		t.Fatalf("response schema %+v is not a schema with properties", media.Schema)
	}
	return schema.Properties
}

// vaultAnswer is what Vault's HTTP layer makes of a handler's response: the
// status and the fields under "data".
func vaultAnswer(t *testing.T, op logical.Operation, resp *logical.Response) (int, map[string]interface{}) {
	t.Helper()
	switch {
	case resp == nil && (op == logical.ReadOperation || op == logical.ListOperation):
		t.Fatalf("a %s returned nothing: Vault answers 404", op)
	case resp == nil:
		return http.StatusNoContent, nil
	}
	code, raw := resp.Data[logical.HTTPStatusCode]
	if !raw {
		return http.StatusOK, resp.Data
	}
	var body struct {
		Data map[string]interface{} `json:"data"`
	}
	if s, _ := resp.Data[logical.HTTPRawBody].(string); s != "" {
		if err := json.Unmarshal([]byte(s), &body); err != nil {
			t.Fatalf("raw body of a %d answer: %v", code, err)
		}
	}
	return code.(int), body.Data
}

// observed collects, per operation and status, the fields the handlers
// returned.
type observed map[string]map[int]map[string]bool

// TestOpenAPIDocumentMatchesTheHandlers builds the OpenAPI document Vault
// publishes for the engine and drives every operation in it against the
// emulator: each has an operation id, declares every status its handler
// answers with, and declares exactly the fields the handler returns, with
// their types.
func TestOpenAPIDocumentMatchesTheHandlers(t *testing.T) {
	env := newTestEnv(t)
	doc := env.openAPIDocument(t)
	ops := oasOperations(doc)

	// The ids of the operations known today; operations added later need an
	// id too, checked below.
	for key, want := range map[string]string{
		"GET /config":              "datadog-read-configuration",
		"POST /config":             "datadog-configure",
		"DELETE /config":           "datadog-delete-configuration",
		"GET /roles/{name}":        "datadog-read-role",
		"POST /roles/{name}":       "datadog-write-role",
		"DELETE /roles/{name}":     "datadog-delete-role",
		"LIST /roles/":             "datadog-list-roles",
		"GET /creds/{name}":        "datadog-generate-credentials",
		"POST /creds/{name}":       "datadog-generate-credentials-with-parameters",
		"POST /tidy":               "datadog-tidy",
		"GET /tidy/status":         "datadog-read-tidy-status",
		"POST /config/rotate-root": "datadog-rotate-root",
		"GET /watch/status":        "datadog-read-watch-status",
	} {
		if got := ops[key].OASOperation; got == nil || got.OperationID != want {
			t.Errorf("%s: operation %+v, want operation id %s", key, got, want)
		}
	}
	ids := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(ops)) {
		op := ops[key]
		if !strings.HasPrefix(op.OperationID, operationPrefix+"-") {
			t.Errorf("%s: operation id %q does not start with %s-", key, op.OperationID, operationPrefix)
		}
		if other, dup := ids[op.OperationID]; dup {
			t.Errorf("%s and %s share the operation id %s", key, other, op.OperationID)
		}
		ids[op.OperationID] = key
		if !slices.ContainsFunc(slices.Collect(maps.Keys(op.Responses)), func(code int) bool { return code >= 200 && code < 300 }) {
			t.Errorf("%s declares no success response: %v", key, op.Responses)
		}
		bodies := map[string]framework.OASContent{}
		if op.RequestBody != nil {
			bodies["request body"] = op.RequestBody.Content
		}
		for code, resp := range op.Responses {
			responseFields(t, doc, resp) // resolves, or fails
			if resp.Description == "" {
				t.Errorf("%s: response %d has no description", key, code)
			}
			bodies[fmt.Sprintf("response %d", code)] = resp.Content
		}
		// Vault drops the $ref of a plugin's schemas: they must be inline.
		for what, content := range bodies {
			for _, media := range content {
				if media.Schema == nil || media.Schema.Ref != "" || len(media.Schema.Properties) == 0 {
					t.Errorf("%s: the %s schema is not inline: %+v", key, what, media.Schema)
				}
			}
		}
	}

	seen := env.driveEveryOperation(t, doc, ops)

	for _, key := range slices.Sorted(maps.Keys(ops)) {
		op := ops[key]
		if len(seen[key]) == 0 {
			t.Errorf("%s: no request of this test drives it; add one", key)
			continue
		}
		for code, resp := range op.Responses {
			if code < 200 || code >= 300 {
				continue
			}
			got, answered := seen[key][code]
			if !answered {
				t.Errorf("%s declares a %d answer that no request got", key, code)
				continue
			}
			want := slices.Sorted(maps.Keys(responseFields(t, doc, resp)))
			if have := slices.Sorted(maps.Keys(got)); !slices.Equal(have, want) {
				t.Errorf("%s %d: the handler returned the fields %v; the schema declares %v", key, code, have, want)
			}
		}
	}
}

// driveEveryOperation sends requests covering every operation, status and
// credential type, and returns the fields each answer had. Each answer is
// checked against its operation's declared responses as it comes.
func (env *testEnv) driveEveryOperation(t *testing.T, doc *framework.OASDocument, ops map[string]oasOperation) observed {
	t.Helper()
	seen := observed{}
	send := func(op logical.Operation, path string, data map[string]interface{}) {
		t.Helper()
		key := operationKey(t, ops, op, path)
		resp := env.mustDo(t, op, path, data)
		code, fields := vaultAnswer(t, op, resp)
		declared, ok := ops[key].Responses[code]
		if !ok {
			t.Errorf("%s (%s): answered %d, which its schema does not declare", key, path, code)
			return
		}
		schema := responseFields(t, doc, declared)
		if schema == nil && len(fields) > 0 {
			t.Errorf("%s (%s): answered %d with fields %v, but declares no body", key, path, code, slices.Sorted(maps.Keys(fields)))
		}
		if schema != nil {
			env.validateFields(t, key, path, op, code, fields)
		}
		if seen[key] == nil {
			seen[key] = map[int]map[string]bool{}
		}
		if seen[key][code] == nil {
			seen[key][code] = map[string]bool{}
		}
		for f := range fields {
			seen[key][code][f] = true
		}
	}

	// What an administrator prepares with the organisation's own keys,
	// before a rotation deletes the one the emulator started with: a
	// service account, a key of a service account with the Standard role,
	// and an access token of the former.
	sa := env.createServiceAccount(t)
	standardKey := env.serviceAccountAppKey(t, env.createServiceAccountWithRole(t, "Datadog Standard Role"))
	token := env.serviceAccessToken(t, sa, defaultRootScopes, time.Now().Add(30*24*time.Hour))

	send(logical.CreateOperation, "config", map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "api_url": env.url})
	send(logical.ReadOperation, "config", nil)

	pool := sa + "," + env.createServiceAccount(t) // two service accounts sharing a role's keys
	roles := map[string]map[string]interface{}{
		"app":    {"scopes": "dashboards_read"},
		"none":   {"scopes": "dashboards_read", "api_key_mode": "none"},
		"static": {"scopes": "dashboards_read", "api_key_mode": "static"}, // warns
		"wide":   {"allow_unscoped": true},                                // warns
		"sa":     {"credential_type": "service_account_application_key", "service_account_id": sa, "scopes": "dashboards_read"},
		"pool":   {"credential_type": "service_account_application_key", "service_account_ids": pool, "scopes": "dashboards_read"},
		"pat":    {"credential_type": "personal_access_token", "scopes": "dashboards_read"},
		"sat":    {"credential_type": "service_access_token", "service_account_id": sa, "scopes": "dashboards_read"},
		"agent":  {"credential_type": "api_key"},
	}
	names := slices.Sorted(maps.Keys(roles))
	for _, name := range names {
		send(logical.CreateOperation, "roles/"+name, roles[name])
	}
	send(logical.UpdateOperation, "roles/app", map[string]interface{}{"ttl": "30m"})
	for _, name := range names {
		send(logical.ReadOperation, "roles/"+name, nil)
		send(logical.ReadOperation, "creds/"+name, nil)
	}
	send(logical.ListOperation, "roles/", nil)
	// Narrowed requests, of every credential type.
	for _, name := range names {
		narrowed := map[string]interface{}{"ttl": "10m"}
		if name != "agent" {
			narrowed["scopes"] = "dashboards_read"
		}
		send(logical.UpdateOperation, "creds/"+name, narrowed)
	}

	send(logical.UpdateOperation, "tidy", map[string]interface{}{"dry_run": true})
	env.waitTidy(t)
	send(logical.ReadOperation, "tidy/status", nil)
	env.watchNow(t)
	send(logical.ReadOperation, "watch/status", nil)

	send(logical.DeleteOperation, "roles/wide", nil)
	send(logical.UpdateOperation, "config/rotate-root", nil)

	// A new identity that cannot delete the leases' keys is taken only with
	// force=true, with warnings naming them; so is deleting config.
	send(logical.UpdateOperation, "config", map[string]interface{}{"app_key": standardKey, "force": true})
	send(logical.DeleteOperation, "config", map[string]interface{}{"force": true})
	send(logical.DeleteOperation, "config", nil)

	// A root that is a service account's access token, which Datadog expires.
	send(logical.CreateOperation, "config", map[string]interface{}{"access_token": token, "service_account_id": sa, "api_url": env.url})
	send(logical.ReadOperation, "config", nil)
	send(logical.UpdateOperation, "config/rotate-root", nil)
	return seen
}

// operationKey finds the document's operation that serves a request.
func operationKey(t *testing.T, ops map[string]oasOperation, op logical.Operation, path string) string {
	t.Helper()
	method := map[logical.Operation]string{
		logical.ReadOperation: "GET", logical.CreateOperation: "POST", logical.UpdateOperation: "POST",
		logical.PatchOperation: "PATCH", logical.DeleteOperation: "DELETE", logical.ListOperation: "LIST",
	}[op]
	var found []string
	for key, o := range ops {
		template := "^" + regexp.MustCompile(`\\\{\w+\\\}`).ReplaceAllString(regexp.QuoteMeta(o.path), `[^/]+`) + "$"
		if strings.HasPrefix(key, method+" ") && regexp.MustCompile(template).MatchString("/"+path) {
			found = append(found, key)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s %s: matches the document's operations %v, want exactly one", op, path, found)
	}
	return found[0]
}

// validateFields checks an answer's fields against the handler's declared
// response, as Vault's response validation does in strict mode: no field
// outside it, every required one present, each of its type. Errors name
// fields, never their values (credentials among them).
func (env *testEnv) validateFields(t *testing.T, key, path string, op logical.Operation, code int, fields map[string]interface{}) {
	t.Helper()
	route := env.b.Route(path)
	if route == nil || route.Operations[op] == nil {
		t.Fatalf("%s: no route for %s %s", key, op, path)
	}
	declared := route.Operations[op].Properties().Responses[code]
	raw, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string]interface{}
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	fd := framework.FieldData{Raw: decoded, Schema: declared[0].Fields}
	if err := fd.ValidateStrict(); err != nil {
		t.Errorf("%s (%s %s): answer %d does not match its schema: %v", key, op, path, code, err)
	}
}

// TestHelpMentionsEveryField checks that vault path-help on every path of
// the OpenAPI document names each field the path takes and each field its
// operations return.
func TestHelpMentionsEveryField(t *testing.T) {
	env := newTestEnv(t)
	doc := env.openAPIDocument(t)
	for _, oasPath := range slices.Sorted(maps.Keys(doc.Paths)) {
		path := strings.TrimPrefix(regexp.MustCompile(`\{\w+\}`).ReplaceAllString(oasPath, "x"), "/")
		p := env.b.Route(path)
		if p == nil {
			t.Fatalf("%s: no route for %s", oasPath, path)
		}
		fields := map[string]bool{}
		for name := range p.Fields {
			fields[name] = true
		}
		for _, op := range p.Operations {
			for _, responses := range op.Properties().Responses {
				for _, r := range responses {
					for name := range r.Fields {
						fields[name] = true
					}
				}
			}
		}
		resp, err := env.b.HandleRequest(t.Context(), &logical.Request{Operation: logical.HelpOperation, Path: path, Storage: env.storage})
		if err != nil {
			t.Fatalf("help on %s: %v", path, err)
		}
		help, _ := resp.Data["help"].(string)
		var missing []string
		for name := range fields {
			if !regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`).MatchString(help) {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("help on %s does not mention %v:\n%s", path, missing, help)
		}
	}
}
