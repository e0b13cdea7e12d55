package backend

import (
	"context"
	"maps"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// HandleRequest serves every request through the framework, and puts the
// request and response schemas of the OpenAPI document that a help request
// returns inline, besides under components. Vault (1.21 included) decodes a
// plugin's document without the $ref of each schema (hashicorp/vault#30714),
// which would leave every body in sys/internal/specs/openapi empty.
func (b *datadogBackend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	resp, err := b.Backend.HandleRequest(ctx, req)
	if err == nil && req.Operation == logical.HelpOperation && resp != nil {
		if doc, ok := resp.Data["openapi"].(*framework.OASDocument); ok {
			inlineSchemas(doc)
		}
	}
	return resp, err
}

func inlineSchemas(doc *framework.OASDocument) {
	inline := func(content framework.OASContent) {
		for _, media := range content {
			if media == nil || media.Schema == nil {
				continue
			}
			name, ok := strings.CutPrefix(media.Schema.Ref, "#/components/schemas/")
			if schema := doc.Components.Schemas[name]; ok && schema != nil {
				media.Schema = schema
			}
		}
	}
	for _, item := range doc.Paths {
		for _, op := range []*framework.OASOperation{item.Get, item.Post, item.Patch, item.Delete} {
			if op == nil {
				continue
			}
			if op.RequestBody != nil {
				inline(op.RequestBody.Content)
			}
			for _, resp := range op.Responses {
				inline(resp.Content)
			}
		}
	}
}

// Response schemas of the engine's operations, as Vault's OpenAPI document
// publishes them: each lists exactly the fields its handler returns, and
// TestOpenAPIDocumentMatchesTheHandlers holds the handlers to it.

// noContent is the answer of a write that returns nothing.
func noContent(description string) framework.Response {
	return framework.Response{Description: description}
}

// stored is the answer of a write that returns nothing but, at times,
// warnings: Vault answers 204 without them and 200 with them.
func stored(what, warnings string) map[int][]framework.Response {
	return map[int][]framework.Response{
		http.StatusNoContent: {noContent(what)},
		http.StatusOK:        {{Description: what + " Warnings say " + warnings + "."}},
	}
}

func ok(description string, fields map[string]*framework.FieldSchema) map[int][]framework.Response {
	return map[int][]framework.Response{http.StatusOK: {{Description: description, Fields: fields}}}
}

func field(t framework.FieldType, required bool, description string) *framework.FieldSchema {
	return &framework.FieldSchema{Type: t, Required: required, Description: description}
}

func configReadResponses() map[int][]framework.Response {
	return ok("The configuration, without its secrets.", map[string]*framework.FieldSchema{
		"site":         field(framework.TypeString, true, "Datadog site of the organisation."),
		"api_url":      field(framework.TypeString, true, "Base URL of the Datadog API set with api_url; empty when the engine calls the site's API."),
		"owner_id":     field(framework.TypeString, true, "Datadog user id of the identity the root credential acts as, found when config was written: it owns the application keys and personal access tokens the engine issues."),
		"owner_handle": field(framework.TypeString, true, "Datadog handle of that identity."),
		"org_id":       field(framework.TypeString, true, "Datadog organisation id of that identity."),
		"api_key_last4": field(framework.TypeString, true,
			"Last four characters of api_key (empty when none was given); the key itself is never returned."),
		"app_key_last4": field(framework.TypeString, true,
			"Last four characters of app_key (empty with an access_token root); the key itself is never returned."),
		"access_token_last4": field(framework.TypeString, true,
			"Last four characters of access_token (empty with an app_key root); the token itself is never returned."),
		"service_account_id": field(framework.TypeString, true, "The service account that owns access_token; empty with an app_key root."),
		"root_credential_type": field(framework.TypeString, true,
			"Kind of the root credential: application_key (app_key) or service_access_token (access_token)."),
		"root_key_id": field(framework.TypeString, true,
			"Datadog id of the root credential; empty until the engine has identified it, which config/rotate-root needs."),
		"root_key_name": field(framework.TypeString, true, "Name of the root credential in Datadog; empty until identified."),
		"root_expires_at": field(framework.TypeString, true,
			"When Datadog expires an access_token root (RFC 3339): the engine's hard end, which no rotation moves (Datadog lets no token make one "+
				"that outlives it); leases end before it. Only a new access_token made by another identity, written to config, moves it. "+
				"Empty for an app_key root, and for a token without expiry."),
		"root_scopes": field(framework.TypeStringSlice, true,
			"Scopes of the root credentials config/rotate-root creates: root_scopes, or by default the current root token's own "+
				"(root_token_scopes) for an access_token root, and what every credential kind needs for an app_key root."),
		"root_token_scopes": field(framework.TypeStringSlice, true,
			"Scopes of the access_token root as Datadog listed them (or its rotation made them): the most a token credential may carry; "+
				"empty for an app_key root, or while the engine has not read them."),
		"rotation_period": field(framework.TypeInt64, true,
			"How often the engine rotates the root credential by itself, in seconds; 0: only on request."),
		"last_rotation": field(framework.TypeString, true,
			"When the root credential was last rotated, or written to config (RFC 3339); empty when not known."),
		"next_rotation": field(framework.TypeString, true,
			"When the engine rotates the root credential by itself next (RFC 3339); empty: not scheduled."),
		"allowed_scopes": field(framework.TypeStringSlice, true, "Datadog permissions the roles of this mount may grant; empty: any."),
		"request_timeout": field(framework.TypeInt64, true,
			"Timeout of each HTTP call to Datadog, in seconds (30 when not set)."),
		"tidy_interval": field(framework.TypeInt64, true, "How often the engine runs tidy by itself, in seconds; 0: never."),
		"last_use_lag": field(framework.TypeInt64, true,
			"How late Datadog is taken to report a key's last use, in seconds; roles' idle_ttl is at least twice this."),
		"api_key_reserve": field(framework.TypeInt, true,
			"How many API keys of the organisation's cap roles with api_key_mode dynamic leave free for people."),
		"watch_interval": field(framework.TypeInt64, true,
			"How often the engine checks its leases' credentials for leaks and idleness, in seconds; 0: never."),
		"audit_events": field(framework.TypeBool, true, "Whether the engine posts a Datadog event for every credential issued, renewed or deleted."),
		"audit_events_sent": field(framework.TypeInt64, true,
			"Audit events posted to Datadog since the plugin started on this node."),
		"audit_events_failed": field(framework.TypeInt64, true,
			"Audit events that could not be posted (Datadog refused or unreachable, queue full, plugin stopping) since the plugin started on this node; each is logged."),
	})
}

const configWriteSummary = "Write the Datadog identity and site the engine uses; its credentials are checked with Datadog first."

func configWriteResponses() map[int][]framework.Response {
	return stored("Configuration stored.", "which Datadog keys force=true left behind, that config/rotate-root cannot "+
		"identify the root credential, that the previous root credential, made by a rotation, is not deleted yet, that an "+
		"access_token root nears its end, or which roles cannot issue under an access_token root")
}

func rotateRootResponses() map[int][]framework.Response {
	return ok("The new root credential, never its secret. A warning says when the previous one is not deleted yet "+
		"(the engine retries every minute), and when an access_token root nears its end.", map[string]*framework.FieldSchema{
		"credential_type": field(framework.TypeString, true, "Kind of the new root credential: application_key or service_access_token."),
		"key_id":          field(framework.TypeString, true, "Datadog id of the new root credential."),
		"key_name":        field(framework.TypeString, true, "Its name in Datadog."),
		"key_last4":       field(framework.TypeString, true, "Its last four characters; the secret itself is never returned."),
		"scopes":          field(framework.TypeStringSlice, true, "Its scopes: config's root_scopes, or the default (for an access_token root, the previous token's)."),
		"rotated_at":      field(framework.TypeTime, true, "When it was made."),
		"expires_at":      field(framework.TypeTime, false, "When Datadog expires it: when the previous one did; access_token roots only."),
	})
}

const rotateRootSummary = "Replace the engine's root credential with a new one, then delete the old one in Datadog."

func roleReadResponses() map[int][]framework.Response {
	return ok("The role.", map[string]*framework.FieldSchema{
		"credential_type": field(framework.TypeString, true, "Kind of Datadog credential the role issues."),
		"scopes":          field(framework.TypeStringSlice, true, "Datadog permissions issued credentials are limited to; empty for api_key roles and unscoped roles."),
		"allow_unscoped": field(framework.TypeBool, false,
			"Whether the role may issue application keys without scopes; application_key and service_account_application_key roles only."),
		"api_key_mode": field(framework.TypeString, false,
			"API key returned with the application key (shared, dynamic, none or static), or how an api_key role issues its API key (shared or dynamic); not for token roles."),
		"api_key_rotation": field(framework.TypeInt64, false,
			"With api_key_mode shared: how long one API key is handed to new leases, in seconds."),
		"service_account_id": field(framework.TypeString, false,
			"Datadog service account that owns issued credentials; service_account_application_key and service_access_token roles only; empty when service_account_ids is set."),
		"service_account_ids": field(framework.TypeStringSlice, false,
			"Service accounts that share the issued application keys; service_account_application_key roles only; empty when service_account_id is set."),
		"service_account_counts": field(framework.TypeMap, false,
			"For each service account of the role, the live application keys this mount issued for it (all roles together); service_account_application_key roles only."),
		"name_template": field(framework.TypeString, true, "Template of the Datadog name of issued credentials; the default when none was set."),
		"ttl":           field(framework.TypeInt64, true, "Default lease duration in seconds; 0: the mount's default."),
		"max_ttl":       field(framework.TypeInt64, true, "Maximum lease lifetime in seconds; 0: the mount's maximum."),
		"idle_ttl": field(framework.TypeInt64, true,
			"How long an issued credential may go unused before the engine deletes it, in seconds; 0: never."),
	})
}

func roleListResponses() map[int][]framework.Response {
	return ok("The names of the roles.", map[string]*framework.FieldSchema{
		"keys": field(framework.TypeStringSlice, true, "Names of the roles."),
	})
}

// credsResponses is what a creds read returns, across credential types:
// the fields of each type's secret.
func credsResponses() map[int][]framework.Response {
	fields := map[string]*framework.FieldSchema{}
	for _, name := range credentialTypeNames() {
		maps.Copy(fields, credentialKinds[name].responseFields())
	}
	return ok("A new credential, with its lease; which fields come depends on the role's credential_type.", fields)
}

func tidyResponses() map[int][]framework.Response {
	return map[int][]framework.Response{
		http.StatusAccepted: {{Description: "Tidy started in the background; read tidy/status for its result."}},
	}
}

func tidyStatusResponses() map[int][]framework.Response {
	return ok("The running or last tidy.", map[string]*framework.FieldSchema{
		"state": {
			Type:          framework.TypeString,
			Required:      true,
			AllowedValues: []interface{}{"running", "finished", "error"},
			Description:   "running, finished, or error (then see error).",
		},
		"started_at":       field(framework.TypeTime, true, "When the run started."),
		"finished_at":      field(framework.TypeTime, false, "When the run ended; absent while it runs."),
		"duration_seconds": field(framework.TypeFloat, false, "How long the run took, in seconds; absent while it runs."),
		"dry_run":          field(framework.TypeBool, true, "Whether the run only reported what it would delete."),
		"safety_buffer":    field(framework.TypeInt64, true, "The run's safety_buffer, in seconds."),
		"found":            field(framework.TypeInt, true, "Credentials found to delete."),
		"deleted":          field(framework.TypeInt, true, "Of those, how many were deleted (none in a dry run)."),
		"failed":           field(framework.TypeInt, true, "Of those, how many could not be deleted."),
		"dropped":          field(framework.TypeInt, true, "Records of leases dropped because their credentials were gone."),
		"by_kind":          field(framework.TypeMap, true, "found, deleted and failed, per credential kind."),
		"candidates": field(framework.TypeSlice, true,
			"The first 100 credentials found to delete, each with its kind, id, name and the reason."),
		"error": field(framework.TypeString, true, "What failed, when state is error; empty otherwise."),
	})
}

const roleWriteSummary = "Create or update a role; scopes and service account are checked with Datadog first."

func roleWriteResponses() map[int][]framework.Response {
	return stored("Role stored.", "that the role is unscoped, that its ttl or max_ttl exceeds the mount's maximum, that it hands out the engine's own API key, "+
		"or that its leases end early, before an access_token root's end")
}
