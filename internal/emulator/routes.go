package emulator

import (
	"net/http"
	"strings"
	"time"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// buildRoutes lists every operation the emulator answers. Paths are the
// spec's templates: serve looks up each one's required permission by it.
func (e *Emulator) buildRoutes() []route {
	get := func(path string, handle func(*request) response) route {
		return route{method: http.MethodGet, path: path, handle: handle}
	}
	routes := []route{
		{method: http.MethodGet, path: "/api/v1/validate", apiKeyOnly: true, handle: func(*request) response {
			return ok(map[string]any{"valid": true})
		}},
		get("/api/v2/validate_keys", func(*request) response { return ok(map[string]any{"status": "ok"}) }),
		get("/api/v2/current_user", func(*request) response {
			return ok(map[string]any{"data": e.userObject(e.user, true), "included": []any{roleObject(e.user.role)}})
		}),
		get("/api/v2/users", func(*request) response {
			return ok(map[string]any{
				"data":     []any{e.userObject(e.user, true)},
				"included": []any{roleObject(e.user.role)},
				"meta":     map[string]any{"page": map[string]any{"total_count": 1, "total_filtered_count": 1}},
			})
		}),
		// include_scopes is accepted and changes nothing: the emulator's
		// list already holds every scope name the spec knows.
		get("/api/v2/permissions", func(*request) response { return ok(map[string]any{"data": permissionObjects()}) }),
		// Scope-guarded reads of an org with no dashboards and no monitors.
		get("/api/v1/dashboard", func(*request) response { return ok(map[string]any{"dashboards": []any{}}) }),
		get("/api/v1/monitor", func(*request) response { return ok([]any{}) }),
	}
	for _, c := range []collection{
		{kind: applicationKeys, path: "/api/v2/current_user/application_keys", idParam: "app_key_id",
			callerOnly: true, creatable: true, includeOwnerOnRead: true},
		{kind: applicationKeys, path: "/api/v2/application_keys", idParam: "app_key_id"},
		{kind: apiKeys, path: "/api/v2/api_keys", idParam: "api_key_id", creatable: true},
	} {
		routes = append(routes, e.keyRoutes(c)...)
	}
	return routes
}

// permissionsCreated stands in for the creation time of every permission,
// which the spec does not give. Datadog writes it with a "Z" (as recorded).
var permissionsCreated = time.Date(2018, 10, 19, 15, 35, 23, 734317000, time.UTC).Format("2006-01-02T15:04:05.000000Z")

// permissionObjects renders permissions.Names the way GET /api/v2/permissions
// does. Display names and groups are derived from the name; descriptions
// come from the spec where it has one.
func permissionObjects() []any {
	objects := make([]any, len(permissions.Names))
	for i, name := range permissions.Names {
		words := strings.Split(name, "_")
		for j, w := range words {
			if w != "" {
				words[j] = strings.ToUpper(w[:1]) + w[1:]
			}
		}
		displayName := strings.Join(words, " ")
		description := permissions.Descriptions[name]
		if description == "" {
			description = displayName + "."
		}
		displayType := "write"
		if strings.HasSuffix(name, "_read") {
			displayType = "read"
		}
		objects[i] = map[string]any{
			"type": "permissions",
			"id":   nameUUID(name),
			"attributes": map[string]any{
				"name":         name,
				"display_name": displayName,
				"description":  description,
				"created":      permissionsCreated,
				"group_name":   words[0],
				"display_type": displayType,
				"name_aliases": []string{},
				"restricted":   false,
			},
		}
	}
	return objects
}
