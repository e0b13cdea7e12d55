package emulator

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// Endpoint is an operation the emulator answers.
type Endpoint struct {
	OperationID    string `json:"operation_id"`
	Method         string `json:"method"`
	Path           string `json:"path"` // the spec's path template
	RateLimitGroup string `json:"rate_limit_group"`
}

// Endpoints lists the operations the emulator answers, in a stable order.
func (e *Emulator) Endpoints() []Endpoint {
	out := make([]Endpoint, len(e.routes))
	for i, rt := range e.routes {
		out[i] = Endpoint{OperationID: rt.operationID, Method: rt.method, Path: rt.path, RateLimitGroup: rt.group}
	}
	slices.SortFunc(out, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method))
	})
	return out
}

// buildRoutes lists every operation the emulator answers. Paths are the
// spec's templates: serve looks up each one's id and required permission
// by it.
func (e *Emulator) buildRoutes() []route {
	op := func(method, path, group string, handle func(*request) response) route {
		return route{method: method, path: path, group: group, handle: handle}
	}
	const get, post, patch, del = http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete
	routes := []route{
		{method: get, path: "/api/v1/validate", group: "validate", apiKeyOnly: true, handle: func(*request) response {
			return ok(map[string]any{"valid": true})
		}},
		op(get, "/api/v2/validate_keys", "validate", func(*request) response { return ok(map[string]any{"status": "ok"}) }),

		op(get, "/api/v2/current_user", "users", e.currentUser),
		op(get, "/api/v2/users", "users", e.listUsers),
		op(post, "/api/v2/users", "users", func(r *request) response { return e.createUser(r, false) }),
		op(post, "/api/v2/service_accounts", "users", func(r *request) response { return e.createUser(r, true) }),
		op(get, "/api/v2/users/{user_id}", "users", e.getUser),
		op(patch, "/api/v2/users/{user_id}", "users", e.updateUser),
		op(del, "/api/v2/users/{user_id}", "users", e.disableUser),

		op(get, "/api/v2/roles", "roles", e.listRoles),
		op(post, "/api/v2/roles", "roles", e.createRole),
		op(get, "/api/v2/roles/{role_id}", "roles", e.getRole),
		op(patch, "/api/v2/roles/{role_id}", "roles", e.updateRole),
		op(del, "/api/v2/roles/{role_id}", "roles", e.deleteRole),
		// include_scopes is accepted and changes nothing: the emulator's
		// list already holds every scope name the spec knows.
		op(get, "/api/v2/permissions", "roles", func(*request) response {
			objects := make([]any, len(permissions.Names))
			for i, name := range permissions.Names {
				objects[i] = permissionObject(name)
			}
			return ok(map[string]any{"data": objects})
		}),

		{method: post, path: "/api/v1/events", group: "events", apiKeyOnly: true, handle: e.createEvent},

		// Scope-guarded reads of an org with no dashboards and no monitors.
		op(get, "/api/v1/dashboard", "dashboards", func(*request) response { return ok(map[string]any{"dashboards": []any{}}) }),
		op(get, "/api/v1/monitor", "monitors", func(*request) response { return ok([]any{}) }),
	}
	for _, c := range []collection{
		{kind: applicationKeys, path: "/api/v2/current_user/application_keys", idParam: "app_key_id", group: "application_keys",
			owners: callerOwned, creatable: true, includeOwnerOnRead: true},
		{kind: applicationKeys, path: "/api/v2/application_keys", idParam: "app_key_id", group: "application_keys"},
		{kind: applicationKeys, path: "/api/v2/service_accounts/{service_account_id}/application_keys", idParam: "app_key_id",
			group: "application_keys", owners: serviceAccountPath, creatable: true, updateOmitsOwner: true},
		{kind: apiKeys, path: "/api/v2/api_keys", idParam: "api_key_id", group: "api_keys", creatable: true},
		{kind: personalAccessTokens, path: "/api/v2/personal_access_tokens", idParam: "token_id", group: "access_tokens",
			creatable: true, alsoListed: []*keyKind{serviceAccessTokens}},
		{kind: serviceAccessTokens, path: "/api/v2/service_accounts/{service_account_id}/access_tokens", idParam: "token_id",
			group: "access_tokens", owners: serviceAccountPath, creatable: true},
	} {
		routes = append(routes, e.keyRoutes(c)...)
	}
	for i := range routes {
		rt := &routes[i]
		rt.operationID = permissions.OperationID(rt.method, rt.path)
		if rt.operationID == "" || !slices.Contains(rateLimitGroups, rt.group) {
			panic(fmt.Sprintf("emulator: route %s %s is not a spec operation or has no rate-limit group", rt.method, rt.path))
		}
	}
	return routes
}
