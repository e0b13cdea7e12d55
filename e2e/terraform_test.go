package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/vault/api"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// The Terraform tests drive the engine with the HTTP calls the hashicorp/vault
// provider (5.x) makes for the resources of examples/terraform, in its order,
// and decide "would the next plan show a change?" the way the provider does.
// Terraform itself cannot fetch providers here; the example's values are
// read from its .tf files, so the test checks the example as written.
//
// What the provider does, from its source:
//   - configure: GET auth/token/lookup-self, then POST auth/token/create for a
//     child token (ttl and explicit_max_ttl max_lease_ttl_seconds, 1200 s by
//     default, not renewable) used for everything else; GET sys/seal-status
//     for the server's version.
//   - vault_mount: create is POST sys/mounts/<path> then a read, GET
//     sys/mounts/<path>; refresh is that read.
//   - vault_generic_endpoint: create is a write of data_json then a read;
//     refresh is a read. With ignore_absent_fields the refreshed data_json
//     keeps the keys written, each with the value read back (the written one
//     if the read lacks it); without it, it is everything read. A plan shows
//     a change when that differs from the configuration's data_json, both
//     JSON-normalized.
//   - data "vault_generic_secret": a read of the path at every plan and
//     refresh, kept in the state.
//   - ephemeral "vault_generic_secret": a read when opened (at plan and at
//     apply); it has no close step, so its lease is never revoked by the
//     provider: it ends at its ttl, or when the child token it was issued
//     to expires.

// terraformExampleDir is the example under test.
const terraformExampleDir = "../examples/terraform"

// terraformProviderTokenTTL is the provider's default max_lease_ttl_seconds,
// the lifetime of its child token, in seconds.
const terraformProviderTokenTTL = 1200

// tfExample is the parsed example.
type tfExample struct {
	files map[string]*hclsyntax.Body // by file name
}

func loadTerraformExample(t *testing.T) *tfExample {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(terraformExampleDir, "*.tf"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no .tf files in %s (%v)", terraformExampleDir, err)
	}
	ex := &tfExample{files: map[string]*hclsyntax.Body{}}
	for _, name := range names {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		file, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%s does not parse: %v", name, diags)
		}
		ex.files[filepath.Base(name)] = file.Body.(*hclsyntax.Body)
	}
	return ex
}

// blocks returns the top-level blocks of a type whose labels start with labels.
func (ex *tfExample) blocks(typ string, labels ...string) []*hclsyntax.Block {
	var found []*hclsyntax.Block
	for _, name := range slices.Sorted(maps.Keys(ex.files)) {
		for _, b := range ex.files[name].Blocks {
			if b.Type == typ && len(b.Labels) >= len(labels) && slices.Equal(b.Labels[:len(labels)], labels) {
				found = append(found, b)
			}
		}
	}
	return found
}

// block returns the one top-level block of a type with exactly these labels.
func (ex *tfExample) block(t *testing.T, typ string, labels ...string) *hclsyntax.Block {
	t.Helper()
	found := ex.blocks(typ, labels...)
	if len(found) != 1 || len(found[0].Labels) != len(labels) {
		t.Fatalf("the example has %d %s blocks labelled %q, want one", len(found), typ, labels)
	}
	return found[0]
}

// tfEvalContext gives the example's expressions the values Terraform would:
// variables and the mount's path, and the functions they use.
func tfEvalContext(mount string, dd *datadog) *hcl.EvalContext {
	vars := map[string]cty.Value{
		"mount_path":           cty.StringVal(mount),
		"datadog_site":         cty.StringVal("datadoghq.com"),
		"datadog_api_url":      cty.StringVal(""),
		"datadog_keys_version": cty.NumberIntVal(1),
		"datadog_api_key":      cty.StringVal(""),
		"datadog_app_key":      cty.StringVal(""),
	}
	if dd != nil {
		vars["datadog_api_url"] = cty.StringVal(dd.URL)
		vars["datadog_api_key"] = cty.StringVal(dd.APIKey())
		vars["datadog_app_key"] = cty.StringVal(dd.AppKey())
	}
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":         cty.ObjectVal(vars),
			"vault_mount": cty.ObjectVal(map[string]cty.Value{"datadog": cty.ObjectVal(map[string]cty.Value{"path": cty.StringVal(mount)})}),
		},
		Functions: map[string]function.Function{"jsonencode": stdlib.JSONEncodeFunc},
	}
}

// attr evaluates an attribute of a block; it fails the test if it is absent.
func attr(t *testing.T, b *hclsyntax.Block, name string, ctx *hcl.EvalContext) cty.Value {
	t.Helper()
	a, ok := b.Body.Attributes[name]
	if !ok {
		t.Fatalf("%s %q has no %s", b.Type, b.Labels, name)
	}
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s %q: %s: %v", b.Type, b.Labels, name, diags)
	}
	return v
}

func attrString(t *testing.T, b *hclsyntax.Block, name string, ctx *hcl.EvalContext) string {
	t.Helper()
	v := attr(t, b, name, ctx)
	if v.Type() != cty.String || v.IsNull() {
		t.Fatalf("%s %q: %s is %s, want a string", b.Type, b.Labels, name, v.Type().FriendlyName())
	}
	return v.AsString()
}

func attrInt(t *testing.T, b *hclsyntax.Block, name string, ctx *hcl.EvalContext) int {
	t.Helper()
	v := attr(t, b, name, ctx)
	if v.Type() != cty.Number || v.IsNull() {
		t.Fatalf("%s %q: %s is %s, want a number", b.Type, b.Labels, name, v.Type().FriendlyName())
	}
	n, acc := v.AsBigFloat().Int64()
	if acc != big.Exact {
		t.Fatalf("%s %q: %s is not an integer", b.Type, b.Labels, name)
	}
	return int(n)
}

// attrBool is a boolean attribute, false when absent (the provider's default).
func attrBool(t *testing.T, b *hclsyntax.Block, name string, ctx *hcl.EvalContext) bool {
	t.Helper()
	if _, ok := b.Body.Attributes[name]; !ok {
		return false
	}
	v := attr(t, b, name, ctx)
	if v.Type() != cty.Bool || v.IsNull() {
		t.Fatalf("%s %q: %s is %s, want a bool", b.Type, b.Labels, name, v.Type().FriendlyName())
	}
	return v.True()
}

// tfEndpoint is a vault_generic_endpoint resource of the example.
type tfEndpoint struct {
	name         string
	path         string
	dataJSON     string
	ignoreAbsent bool
}

func (ex *tfExample) endpoints(t *testing.T, ctx *hcl.EvalContext) []tfEndpoint {
	t.Helper()
	var eps []tfEndpoint
	for _, b := range ex.blocks("resource", "vault_generic_endpoint") {
		eps = append(eps, tfEndpoint{
			name:         b.Labels[1],
			path:         attrString(t, b, "path", ctx),
			dataJSON:     attrString(t, b, "data_json", ctx),
			ignoreAbsent: attrBool(t, b, "ignore_absent_fields", ctx),
		})
	}
	if len(eps) == 0 {
		t.Fatal("the example has no vault_generic_endpoint resource")
	}
	return eps
}

// normalizeDataJSON is the provider's normalization of data_json: decoded
// and encoded again (sorted keys, no spaces, numbers as float64).
func normalizeDataJSON(t *testing.T, s string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("data_json %s: %v", s, err)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// refreshedDataJSON is the data_json the provider stores after reading an
// endpoint whose state holds stateJSON.
func refreshedDataJSON(t *testing.T, stateJSON string, read map[string]any, ignoreAbsent bool) string {
	t.Helper()
	relevant := read
	if ignoreAbsent {
		relevant = nil
		if err := json.Unmarshal([]byte(stateJSON), &relevant); err != nil {
			t.Fatal(err)
		}
		for k, v := range read {
			if _, ok := relevant[k]; ok {
				relevant[k] = v
			}
		}
	}
	out, err := json.Marshal(relevant)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// endpointPlanDiff reads an endpoint as a refresh does and returns what the
// next plan would change, "" for nothing.
func endpointPlanDiff(t *testing.T, client *api.Client, ep tfEndpoint) string {
	t.Helper()
	secret, err := client.Logical().Read(ep.path)
	if err != nil || secret == nil {
		noteError(err)
		t.Fatalf("reading %s: %v (nothing there: %v)", ep.path, err, secret == nil)
	}
	config := normalizeDataJSON(t, ep.dataJSON)
	state := refreshedDataJSON(t, config, secret.Data, ep.ignoreAbsent)
	if state == config {
		return ""
	}
	return fmt.Sprintf("data_json: %s => %s", state, config)
}

// applyEndpoint creates an endpoint as the provider does: write, then read.
func applyEndpoint(t *testing.T, client *api.Client, ep tfEndpoint) string {
	t.Helper()
	var data map[string]any
	if err := json.Unmarshal([]byte(ep.dataJSON), &data); err != nil {
		t.Fatalf("%s: data_json: %v", ep.name, err)
	}
	write(t, client, ep.path, data)
	return endpointPlanDiff(t, client, ep)
}

// terraformRun starts one run of the provider: it looks up the token it was
// given and works with a child token of it.
func terraformRun(t *testing.T, parent *api.Client) *api.Client {
	t.Helper()
	if _, err := parent.Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("looking up the token: %v", err)
	}
	renewable := false
	child, err := parent.Auth().Token().Create(&api.TokenCreateRequest{
		DisplayName:    "terraform",
		TTL:            fmt.Sprintf("%ds", terraformProviderTokenTTL),
		ExplicitMaxTTL: fmt.Sprintf("%ds", terraformProviderTokenTTL),
		Renewable:      &renewable,
	})
	if err != nil {
		t.Fatalf("creating the child token: %v", err)
	}
	if _, err := parent.Sys().SealStatus(); err != nil {
		t.Fatalf("reading the seal status: %v", err)
	}
	client, err := parent.Clone()
	if err != nil {
		t.Fatal(err)
	}
	client.SetToken(child.Auth.ClientToken)
	return client
}

// mountPlanDiff reads the mount as a refresh does and compares it with the
// example's vault_mount.
func mountPlanDiff(t *testing.T, client *api.Client, path, typ, description string, defaultTTL, maxTTL int) string {
	t.Helper()
	m, err := client.Sys().GetMount(path)
	if err != nil {
		t.Fatalf("reading mount %s: %v", path, err)
	}
	var diffs []string
	if m.Type != typ {
		diffs = append(diffs, fmt.Sprintf("type: %q => %q", m.Type, typ))
	}
	if m.Description != description {
		diffs = append(diffs, fmt.Sprintf("description: %q => %q", m.Description, description))
	}
	if m.Config.DefaultLeaseTTL != defaultTTL {
		diffs = append(diffs, fmt.Sprintf("default_lease_ttl_seconds: %d => %d", m.Config.DefaultLeaseTTL, defaultTTL))
	}
	if m.Config.MaxLeaseTTL != maxTTL {
		diffs = append(diffs, fmt.Sprintf("max_lease_ttl_seconds: %d => %d", m.Config.MaxLeaseTTL, maxTTL))
	}
	// Arguments the example leaves at their defaults.
	if len(m.Options) != 0 {
		diffs = append(diffs, fmt.Sprintf("options: %v => {}", m.Options))
	}
	if m.Local || m.ExternalEntropyAccess {
		diffs = append(diffs, fmt.Sprintf("local=%v external_entropy_access=%v => false", m.Local, m.ExternalEntropyAccess))
	}
	return strings.Join(diffs, "; ")
}

// runLocalExec runs a local-exec provisioner of the example as Terraform does
// on Unix, /bin/sh -c with the block's environment added to Terraform's (here
// the address and token of the test server, and the vault CLI on PATH).
func runLocalExec(t *testing.T, b *hclsyntax.Block, ctx *hcl.EvalContext) {
	t.Helper()
	var prov *hclsyntax.Block
	for _, nested := range b.Body.Blocks {
		if nested.Type == "provisioner" && slices.Equal(nested.Labels, []string{"local-exec"}) {
			prov = nested
		}
	}
	if prov == nil {
		t.Fatalf("%s %q has no local-exec provisioner", b.Type, b.Labels)
	}
	command := attrString(t, prov, "command", ctx)
	env := append(vaultEnv(vault.addr, vault.token), "PATH="+filepath.Dir(vault.bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	for k, v := range attr(t, prov, "environment", ctx).AsValueMap() {
		env = append(env, k+"="+v.AsString())
	}
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		noteError(fmt.Errorf("%w: %s", err, out))
		t.Fatalf("%s %q: local-exec failed: %v\n%s", b.Type, b.Labels, err, redactSecrets(string(out)))
	}
}

// TestTerraformCallSequence applies the example, then plans it twice, with
// the provider's calls: every read must match what was written, so that no
// plan shows a change, and the credentials Terraform reads must work and
// end with the provider's token.
func TestTerraformCallSequence(t *testing.T) {
	t.Parallel()
	dd := startDatadog(t)
	root := newClient(t)
	mount := mountPath(t)
	ex := loadTerraformExample(t)
	ctx := tfEvalContext(mount, dd)

	mountBlock := ex.block(t, "resource", "vault_mount", "datadog")
	path := attrString(t, mountBlock, "path", ctx)
	typ := attrString(t, mountBlock, "type", ctx)
	description := attrString(t, mountBlock, "description", ctx)
	defaultTTL := attrInt(t, mountBlock, "default_lease_ttl_seconds", ctx)
	maxTTL := attrInt(t, mountBlock, "max_lease_ttl_seconds", ctx)
	if path != mount || typ != pluginName {
		t.Fatalf("vault_mount: path %q type %q, want var.mount_path and the plugin's name %q", path, typ, pluginName)
	}
	endpoints := ex.endpoints(t, ctx)

	// Both ways of reading credentials read the same path: a role of the
	// example meant for Terraform.
	credsPath := attrString(t, ex.block(t, "ephemeral", "vault_generic_secret", "datadog"), "path", ctx)
	if dataPath := attrString(t, ex.block(t, "data", "vault_generic_secret", "datadog"), "path", ctx); dataPath != credsPath {
		t.Fatalf("the data source reads %s, the ephemeral resource %s: want the same role", dataPath, credsPath)
	}
	rolePath := strings.Replace(credsPath, "/creds/", "/roles/", 1)
	i := slices.IndexFunc(endpoints, func(ep tfEndpoint) bool { return ep.path == rolePath })
	if i < 0 {
		t.Fatalf("the example reads %s but writes no role %s", credsPath, rolePath)
	}
	// The role's fields in the forms the test relies on; a form the engine
	// reads back differently fails the plan checks below instead.
	var role struct {
		Scopes     []string
		APIKeyMode string
		TTL        int
	}
	var roleData map[string]any
	if err := json.Unmarshal([]byte(endpoints[i].dataJSON), &roleData); err != nil {
		t.Fatalf("role %s: %v", rolePath, err)
	}
	for _, s := range asSlice(roleData["scopes"]) {
		role.Scopes = append(role.Scopes, fmt.Sprint(s))
	}
	role.APIKeyMode, _ = roleData["api_key_mode"].(string)
	if ttl, ok := roleData["ttl"].(float64); ok {
		role.TTL = int(ttl)
	}
	// Every plan issues credentials of this role that nothing revokes early.
	if role.APIKeyMode != "none" || role.TTL <= 0 || role.TTL > terraformProviderTokenTTL {
		t.Errorf("role %s: api_key_mode %q, ttl %v: a role Terraform reads wants api_key_mode none and a short ttl in seconds",
			rolePath, roleData["api_key_mode"], roleData["ttl"])
	}

	// First apply.
	run := terraformRun(t, root)
	input := &api.MountInput{
		Type:        typ,
		Description: description,
		Config: api.MountConfigInput{
			DefaultLeaseTTL: fmt.Sprintf("%ds", defaultTTL),
			MaxLeaseTTL:     fmt.Sprintf("%ds", maxTTL),
		},
		Options: map[string]string{},
	}
	if err := run.Sys().Mount(path, input); err != nil {
		t.Fatalf("POST sys/mounts/%s: %v", path, err)
	}
	disableAtCleanup(t, root, path, dd)
	requireRunningVersion(t, root, path)
	if diff := mountPlanDiff(t, run, path, typ, description, defaultTTL, maxTTL); diff != "" {
		t.Errorf("vault_mount.datadog: read after create differs: %s", diff)
	}
	runLocalExec(t, ex.block(t, "resource", "terraform_data", "datadog_keys"), ctx)
	for _, ep := range endpoints {
		if diff := applyEndpoint(t, run, ep); diff != "" {
			t.Errorf("vault_generic_endpoint.%s: read after create differs, every plan would show: %s", ep.name, diff)
		}
	}
	var dataSourceKeys, ephemeralCreds []map[string]any
	var runs []*api.Client
	readCredentials := func(run *api.Client) {
		t.Helper()
		runs = append(runs, run)
		dataSourceKeys = append(dataSourceKeys, readCreds(t, run, credsPath).Data)
		opened := readCreds(t, run, credsPath)
		if opened.LeaseDuration != role.TTL {
			t.Errorf("ephemeral credentials last %ds, want the role's ttl of %ds", opened.LeaseDuration, role.TTL)
		}
		ephemeralCreds = append(ephemeralCreds, opened.Data)
	}
	readCredentials(run)

	// A plan, then another: a refresh each, which must find no change.
	for n := 1; n <= 2; n++ {
		run := terraformRun(t, root)
		if diff := mountPlanDiff(t, run, path, typ, description, defaultTTL, maxTTL); diff != "" {
			t.Errorf("plan %d: vault_mount.datadog would change: %s", n, diff)
		}
		for _, ep := range endpoints {
			if diff := endpointPlanDiff(t, run, ep); diff != "" {
				t.Errorf("plan %d: vault_generic_endpoint.%s would change: %s", n, ep.name, diff)
			}
		}
		readCredentials(run)
	}

	// The data source's trade-off: every read a new credential.
	var ids []string
	for _, creds := range dataSourceKeys {
		ids = append(ids, str(t, creds, "application_key_id"))
	}
	if unique := slices.Compact(slices.Sorted(slices.Values(ids))); len(unique) != len(ids) {
		t.Errorf("the data source's reads gave the application keys %v, want a new one per read", ids)
	}

	// Ephemeral credentials: an application key of the role's scopes, no API
	// key (api_key_mode none), that works with the caller's own API key.
	var issued []string
	for _, creds := range slices.Concat(dataSourceKeys, ephemeralCreds) {
		issued = append(issued, credentialIDs(creds)...)
	}
	for _, creds := range ephemeralCreds {
		if _, ok := creds["api_key"]; ok {
			t.Errorf("credentials of a role with api_key_mode none hold an API key")
		}
		key, ok := dd.key(str(t, creds, "application_key_id"))
		if !ok {
			t.Fatalf("application key %v is not in Datadog", creds["application_key_id"])
		}
		if !slices.Equal(key.Scopes, role.Scopes) {
			t.Errorf("application key scopes in Datadog = %v, want the role's %v", key.Scopes, role.Scopes)
		}
		if got := dd.get(t, "/api/v2/validate_keys", dd.APIKey(), str(t, creds, "application_key")); got != http.StatusOK {
			t.Errorf("GET /api/v2/validate_keys with the ephemeral application key: HTTP %d, want 200", got)
		}
	}

	// Nothing revokes these leases when the runs end; each run's child token
	// does when it expires (after terraformProviderTokenTTL). Revoking the
	// tokens now stands for that expiry.
	for _, run := range runs {
		if err := root.Auth().Token().RevokeTree(run.Token()); err != nil {
			t.Fatalf("revoking a run's token: %v", err)
		}
	}
	dd.waitKeysGone(t, 30*time.Second, issued...)
	for _, creds := range ephemeralCreds {
		if got := dd.get(t, "/api/v2/validate_keys", dd.APIKey(), str(t, creds, "application_key")); got != http.StatusForbidden {
			t.Errorf("GET /api/v2/validate_keys with an ephemeral key after its token ended: HTTP %d, want 403", got)
		}
	}
}

// TestTerraformRoleFormsThatNeverConverge writes roles in the forms the
// example avoids, and shows what the engine reads back: values in another
// form, or more fields, which every plan would then try to write again.
// The example's own form is the control: it converges.
func TestTerraformRoleFormsThatNeverConverge(t *testing.T) {
	t.Parallel()
	_, client, mount := startEngine(t)

	for _, tc := range []struct {
		name         string
		dataJSON     string
		ignoreAbsent bool
		wantRead     map[string]any // fields of the read, as JSON values
		converges    bool
	}{
		{
			name:         "list-and-seconds",
			dataJSON:     `{"scopes":["dashboards_read","monitors_read"],"ttl":300,"max_ttl":600}`,
			ignoreAbsent: true,
			wantRead:     map[string]any{"scopes": []any{"dashboards_read", "monitors_read"}, "ttl": json.Number("300"), "max_ttl": json.Number("600")},
			converges:    true,
		},
		{
			name:         "comma-string",
			dataJSON:     `{"scopes":"dashboards_read,monitors_read","ttl":300}`,
			ignoreAbsent: true,
			wantRead:     map[string]any{"scopes": []any{"dashboards_read", "monitors_read"}},
		},
		{
			name:         "duration-string",
			dataJSON:     `{"scopes":["dashboards_read"],"ttl":"1h","max_ttl":"2h"}`,
			ignoreAbsent: true,
			wantRead:     map[string]any{"ttl": json.Number("3600"), "max_ttl": json.Number("7200")},
		},
		{
			name:         "seconds-as-string",
			dataJSON:     `{"scopes":["dashboards_read"],"ttl":"300"}`,
			ignoreAbsent: true,
			wantRead:     map[string]any{"ttl": json.Number("300")},
		},
		{
			name:         "duplicate-scope",
			dataJSON:     `{"scopes":["monitors_read","monitors_read"],"ttl":300}`,
			ignoreAbsent: true,
			wantRead:     map[string]any{"scopes": []any{"monitors_read"}},
		},
		{
			name:         "without-ignore-absent-fields",
			dataJSON:     `{"scopes":["dashboards_read"],"ttl":300,"max_ttl":600}`,
			ignoreAbsent: false,
			wantRead: map[string]any{
				"credential_type":  "application_key",
				"api_key_mode":     "shared",
				"api_key_rotation": json.Number("86400"),
				"allow_unscoped":   false,
				"name_template":    "vault-{{ .RoleName | truncate 30 }}-{{ .DisplayName | truncate 30 }}-{{ unix_time }}",
			},
		},
	} {
		ep := tfEndpoint{name: tc.name, path: mount + "/roles/" + tc.name, dataJSON: tc.dataJSON, ignoreAbsent: tc.ignoreAbsent}
		diff := applyEndpoint(t, client, ep)
		secret, err := client.Logical().Read(ep.path)
		if err != nil || secret == nil {
			t.Fatalf("reading %s: %v", ep.path, err)
		}
		for field, want := range tc.wantRead {
			if got := secret.Data[field]; !reflect.DeepEqual(got, want) {
				t.Errorf("%s: wrote %s, read %s = %#v, want %#v", tc.name, tc.dataJSON, field, got, want)
			}
		}
		switch {
		case tc.converges && diff != "":
			t.Errorf("%s: wrote %s, the next plan would change %s", tc.name, tc.dataJSON, diff)
		case !tc.converges && diff == "":
			t.Errorf("%s: wrote %s and read it back unchanged, want a read that differs", tc.name, tc.dataJSON)
		}
		// A second apply writes the same body again: the read is the same,
		// so the form never converges.
		if again := applyEndpoint(t, client, ep); again != diff {
			t.Errorf("%s: after writing again the plan would change %q, before %q", tc.name, again, diff)
		}
		t.Logf("%s: wrote %s; next plan: %s", tc.name, tc.dataJSON, cmpOr(diff, "no changes"))
	}
}

// asSlice returns v if it is a JSON array, else nothing.
func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestTerraformExampleFiles checks what terraform fmt and validate would
// check of the example without its providers: every file is in canonical
// HCL format (the formatting terraform fmt applies), every variable used is
// declared, and the Datadog keys are ephemeral and sensitive variables, so
// that Terraform refuses to put them in its state or a plan.
func TestTerraformExampleFiles(t *testing.T) {
	t.Parallel()
	names, err := filepath.Glob(filepath.Join(terraformExampleDir, "*.tf"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no .tf files in %s (%v)", terraformExampleDir, err)
	}
	for _, name := range names {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if formatted := hclwrite.Format(src); !bytes.Equal(formatted, src) {
			t.Errorf("%s is not formatted (terraform fmt would rewrite it)", name)
		}
	}

	ex := loadTerraformExample(t)
	declared := map[string]*hclsyntax.Block{}
	for _, b := range ex.blocks("variable") {
		declared[b.Labels[0]] = b
	}
	for name, body := range ex.files {
		for _, ref := range variablesUsed(body) {
			if _, ok := declared[ref]; !ok {
				t.Errorf("%s uses var.%s, which no variable block declares", name, ref)
			}
		}
	}
	ctx := &hcl.EvalContext{}
	for _, key := range []string{"datadog_api_key", "datadog_app_key"} {
		b, ok := declared[key]
		if !ok {
			t.Errorf("no variable %s", key)
			continue
		}
		if !attrBool(t, b, "ephemeral", ctx) || !attrBool(t, b, "sensitive", ctx) {
			t.Errorf("variable %s must be ephemeral and sensitive", key)
		}
	}
}

// variablesUsed lists the input variables (var.NAME) a body refers to.
func variablesUsed(body *hclsyntax.Body) []string {
	var names []string
	for _, a := range body.Attributes {
		for _, traversal := range a.Expr.Variables() {
			if traversal.RootName() != "var" || len(traversal) < 2 {
				continue
			}
			if step, ok := traversal[1].(hcl.TraverseAttr); ok {
				names = append(names, step.Name)
			}
		}
	}
	for _, b := range body.Blocks {
		names = append(names, variablesUsed(b.Body)...)
	}
	return names
}
