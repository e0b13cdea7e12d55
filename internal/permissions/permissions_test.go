package permissions

import (
	"slices"
	"strings"
	"testing"
)

func TestNamesSortedAndUnique(t *testing.T) {
	if len(Names) < 100 {
		t.Fatalf("only %d names: is permissions_gen.go generated?", len(Names))
	}
	if !slices.IsSorted(Names) || len(slices.Compact(slices.Clone(Names))) != len(Names) {
		t.Error("Names is not sorted and de-duplicated")
	}
}

func TestIsKnown(t *testing.T) {
	for _, name := range []string{"dashboards_read", "dashboards_public_share", "user_app_keys", "api_keys_delete", "monitors_read"} {
		if !IsKnown(name) {
			t.Errorf("IsKnown(%q) = false", name)
		}
	}
	for _, name := range []string{"", "dashboards", "DASHBOARDS_READ", "no_such_scope"} {
		if IsKnown(name) {
			t.Errorf("IsKnown(%q) = true", name)
		}
	}
}

func TestRequired(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         Requirement
	}{
		{"GET", "/api/v1/dashboard", Requirement{"OR", []string{"dashboards_read"}}},
		{"get", "/api/v1/monitor", Requirement{"OR", []string{"monitors_read"}}},
		{"POST", "/api/v2/current_user/application_keys", Requirement{"OR", []string{"user_app_keys"}}},
		{"DELETE", "/api/v2/api_keys/{api_key_id}", Requirement{"OR", []string{"api_keys_delete"}}},
		{"PATCH", "/api/v2/application_keys/{app_key_id}", Requirement{"OR", []string{"org_app_keys_write"}}},
		{"GET", "/api/v2/validate_keys", Requirement{"OPEN", []string{}}},
	} {
		got, ok := Required(tc.method, tc.path)
		if !ok || got.Operator != tc.want.Operator || !slices.Equal(got.Permissions, tc.want.Permissions) {
			t.Errorf("Required(%s, %s) = %v, %v; want %v", tc.method, tc.path, got, ok, tc.want)
		}
	}
	if _, ok := Required("GET", "/api/v2/current_user"); ok {
		t.Error("GET /api/v2/current_user has no x-permission in the spec")
	}
}

func TestSatisfiedBy(t *testing.T) {
	holds := func(perms ...string) func(string) bool {
		return func(p string) bool { return slices.Contains(perms, p) }
	}
	for _, tc := range []struct {
		req  Requirement
		has  func(string) bool
		want bool
	}{
		{Requirement{OperatorOPEN, nil}, holds(), true},
		{Requirement{OperatorOR, []string{"a", "b"}}, holds("b"), true},
		{Requirement{OperatorOR, []string{"a", "b"}}, holds("c"), false},
		{Requirement{OperatorAND, []string{"a", "b"}}, holds("a", "b"), true},
		{Requirement{OperatorAND, []string{"a", "b"}}, holds("a"), false},
	} {
		if got := tc.req.SatisfiedBy(tc.has); got != tc.want {
			t.Errorf("%v.SatisfiedBy = %v, want %v", tc.req, got, tc.want)
		}
	}
}

func TestOperationIDs(t *testing.T) {
	for _, tc := range []struct{ version, method, path, id string }{
		{"v1", "GET", "/api/v1/validate", "Validate"}, // v2 has a Validate too
		{"v2", "post", "/api/v2/current_user/application_keys", "CreateCurrentUserApplicationKey"},
		{"v2", "DELETE", "/api/v2/users/{user_id}", "DisableUser"},
		{"v1", "DELETE", "/api/v1/user/{user_handle}", "DisableUser"},
		{"v2", "GET", "/api/v2/current_user", "GetCurrentUser"}, // listed without an x-permission
	} {
		if got := OperationID(tc.method, tc.path); got != tc.id {
			t.Errorf("OperationID(%s, %s) = %q, want %q", tc.method, tc.path, got, tc.id)
		}
		method, path, ok := OperationByID(tc.version, tc.id)
		if !ok || method != strings.ToUpper(tc.method) || path != tc.path {
			t.Errorf("OperationByID(%q) = %s %s, %v", tc.id, method, path, ok)
		}
	}
	if OperationID("GET", "/api/v2/nope") != "" {
		t.Error("OperationID of an unknown path is not empty")
	}
	if _, _, ok := OperationByID("v2", "NoSuchOperation"); ok {
		t.Error("OperationByID of an unknown id succeeded")
	}
}
