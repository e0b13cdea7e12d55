package e2e

import (
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/framework"
)

// knownOperations are the engine's paths and methods today, as the OpenAPI
// document names them under the mount (LIST: GET with list=true); the checks
// below cover every path the document lists, these and any added since.
var knownOperations = map[string][]string{
	"config":             {"DELETE", "GET", "POST"},
	"config/rotate-root": {"POST"},
	"roles/{name}":       {"DELETE", "GET", "POST"},
	"roles/":             {"LIST"},
	"creds/{name}":       {"GET", "POST"},
	"tidy":               {"POST"},
	"tidy/status":        {"GET"},
	"watch/status":       {"GET"},
}

// TestOpenAPIDocument reads Vault's OpenAPI document from the server and
// checks that every path of the engine's mount is in it with an operation
// id and response schemas, that what the server really returns on each
// read is what the schema declares, and that vault path-help on each path
// names every field the path takes and returns.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	_, client, mount := startEngine(t)
	// Something to read on every read path: a role, and a tidy's status.
	write(t, client, mount+"/roles/r", map[string]any{"scopes": "dashboards_read", "ttl": "10m"})
	runTidy(t, client, mount, "1h")

	doc := readOpenAPI(t, client)
	paths := map[string]*framework.OASPathItem{}
	for path, item := range doc.Paths {
		if rel, ok := strings.CutPrefix(path, "/"+mount+"/"); ok {
			paths[rel] = item
		}
	}
	for path, methods := range knownOperations {
		if paths[path] == nil {
			t.Errorf("the OpenAPI document has no path /%s/%s; it has %v", mount, path, slices.Sorted(maps.Keys(paths)))
		} else if got := slices.Sorted(maps.Keys(operationsOf(paths[path]))); !slices.Equal(got, methods) {
			t.Errorf("/%s/%s has the operations %v, want %v", mount, path, got, methods)
		}
	}

	ids := map[string]string{}
	for _, path := range slices.Sorted(maps.Keys(paths)) {
		item := paths[path]
		ops := operationsOf(item)
		if len(ops) == 0 {
			t.Errorf("/%s/%s has no operation", mount, path)
		}
		var helpFields []string
		for _, p := range item.Parameters {
			helpFields = append(helpFields, p.Name)
		}
		for _, method := range slices.Sorted(maps.Keys(ops)) {
			op := ops[method]
			where := method + " /" + mount + "/" + path
			if op.OperationID == "" {
				t.Errorf("%s has no operation id", where)
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("%s and %s share the operation id %s", where, other, op.OperationID)
			}
			ids[op.OperationID] = where

			helpFields = append(helpFields, requestFields(t, doc, where, op)...)
			declared := map[int][]string{}
			for code, resp := range op.Responses {
				declared[code] = schemaFields(t, doc, where, resp)
				helpFields = append(helpFields, declared[code]...)
			}
			if !slices.ContainsFunc(slices.Collect(maps.Keys(declared)), func(c int) bool { return c >= 200 && c < 300 }) {
				t.Errorf("%s declares no success response: %v", where, slices.Sorted(maps.Keys(declared)))
			}
			if method == "GET" || method == "LIST" {
				if len(declared[http.StatusOK]) == 0 {
					t.Errorf("%s declares no 200 response schema", where)
					continue
				}
				// The server's answer, through Vault's HTTP layer.
				got := readPath(t, client, method, mount, path)
				for field := range got {
					if !slices.Contains(declared[http.StatusOK], field) {
						t.Errorf("%s returned the field %s, which its response schema %v does not declare", where, field, declared[http.StatusOK])
					}
				}
			}
		}

		target := mount + "/" + regexp.MustCompile(`\{\w+\}`).ReplaceAllString(path, "x")
		help := cli(t, "path-help", target)
		for _, field := range helpFields {
			if !regexp.MustCompile(`\b` + regexp.QuoteMeta(field) + `\b`).MatchString(help) {
				t.Errorf("vault path-help %s does not mention %s:\n%s", target, field, help)
			}
		}
	}
	t.Logf("%d paths, %d operations with ids: %v", len(paths), len(ids), slices.Sorted(maps.Keys(ids)))
}

// readOpenAPI reads the server's OpenAPI document, as a client generator
// or the UI would.
func readOpenAPI(t *testing.T, client *api.Client) *framework.OASDocument {
	t.Helper()
	req := client.NewRequest(http.MethodGet, "/v1/sys/internal/specs/openapi")
	resp, err := client.RawRequestWithContext(t.Context(), req)
	if err != nil {
		noteError(err)
		t.Fatalf("reading sys/internal/specs/openapi: %v", err)
	}
	defer resp.Body.Close()
	var doc framework.OASDocument
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("decoding the OpenAPI document: %v", err)
	}
	if len(doc.Paths) == 0 {
		t.Fatal("the OpenAPI document lists no path")
	}
	return &doc
}

// operationsOf names a path's operations by method, with LIST for Vault's
// GET with list=true.
func operationsOf(item *framework.OASPathItem) map[string]*framework.OASOperation {
	ops := map[string]*framework.OASOperation{}
	for method, op := range map[string]*framework.OASOperation{
		"GET": item.Get, "POST": item.Post, "PATCH": item.Patch, "DELETE": item.Delete,
	} {
		if op == nil {
			continue
		}
		if method == "GET" && slices.ContainsFunc(op.Parameters, func(p framework.OASParameter) bool { return p.Name == "list" }) {
			method = "LIST"
		}
		ops[method] = op
	}
	return ops
}

// schemaFields returns the fields of a response's schema, none when it
// declares no body; a schema that does not resolve fails the test.
func schemaFields(t *testing.T, doc *framework.OASDocument, where string, resp *framework.OASResponse) []string {
	t.Helper()
	media := resp.Content["application/json"]
	if media == nil || media.Schema == nil {
		return nil
	}
	schema := resolve(doc, media.Schema)
	if schema == nil || len(schema.Properties) == 0 {
		t.Errorf("%s: the response has no schema with properties: %+v", where, media.Schema)
		return nil
	}
	return slices.Sorted(maps.Keys(schema.Properties))
}

// requestFields are the query parameters and body fields an operation
// takes (the list flag aside); a body schema that does not resolve fails
// the test.
func requestFields(t *testing.T, doc *framework.OASDocument, where string, op *framework.OASOperation) []string {
	t.Helper()
	var fields []string
	for _, p := range op.Parameters {
		if p.Name != "list" {
			fields = append(fields, p.Name)
		}
	}
	if op.RequestBody == nil {
		return fields
	}
	media := op.RequestBody.Content["application/json"]
	var schema *framework.OASSchema
	if media != nil && media.Schema != nil {
		schema = resolve(doc, media.Schema)
	}
	if schema == nil || len(schema.Properties) == 0 {
		t.Errorf("%s: the request body has no schema with properties: %+v", where, media)
		return fields
	}
	return append(fields, slices.Collect(maps.Keys(schema.Properties))...)
}

func resolve(doc *framework.OASDocument, s *framework.OASSchema) *framework.OASSchema {
	if s.Ref == "" {
		return s
	}
	name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/")
	if !ok {
		return nil
	}
	return doc.Components.Schemas[name]
}

// readPath reads a path of the mount through the API, with the role the
// test wrote as its name parameter, and returns the data of the answer.
func readPath(t *testing.T, client *api.Client, method, mount, path string) map[string]any {
	t.Helper()
	concrete := strings.ReplaceAll(path, "{name}", "r")
	if strings.Contains(concrete, "{") {
		t.Fatalf("/%s/%s: the test does not know what to put in its parameters; add it", mount, path)
	}
	var secret *api.Secret
	var err error
	switch {
	case method == "LIST":
		secret, err = client.Logical().List(mount + "/" + concrete)
	case strings.HasPrefix(concrete, "creds/"):
		secret, err = tryReadCreds(client, mount+"/"+concrete)
	default:
		secret, err = client.Logical().Read(mount + "/" + concrete)
	}
	if err != nil || secret == nil {
		noteError(err)
		t.Fatalf("%s %s/%s: %v (no data: %v)", method, mount, concrete, err, secret == nil)
	}
	return secret.Data
}
