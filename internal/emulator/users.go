package emulator

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// userAttributes are the writable attributes of users and service accounts.
type userAttributes struct {
	Email          optional[string]  `json:"email"`
	Name           optional[string]  `json:"name"`
	Title          optional[*string] `json:"title"`
	ServiceAccount optional[bool]    `json:"service_account"`
	Disabled       optional[bool]    `json:"disabled"`
}

// userNotFound is Datadog's answer for an unknown or (on disable) already
// disabled user, as recorded.
func userNotFound(id string) response {
	return errorResponse(http.StatusNotFound, id+" not found")
}

func (e *Emulator) currentUser(r *request) response {
	u := e.org.Users[r.callerID()]
	return ok(map[string]any{"data": e.userObject(u, true), "included": e.userRoles(u)})
}

// userRoles renders a user's roles for "included".
func (e *Emulator) userRoles(u *user) []any {
	out := []any{}
	for _, id := range u.RoleIDs {
		if r := e.org.Roles[id]; r != nil {
			out = append(out, e.roleObject(r, viewIncluded))
		}
	}
	return out
}

// createUser creates a user (an invitation: Pending until they log in) or
// a service account (active at once).
func (e *Emulator) createUser(r *request, serviceAccount bool) response {
	data, errResp := decodeDocument[userAttributes](r, "users")
	if errResp != nil {
		return *errResp
	}
	a := data.Attributes
	if serviceAccount && !a.ServiceAccount.value {
		return errorResponse(http.StatusBadRequest, "service_account must be true")
	}
	email, errResp := e.checkEmail(a.Email.value, "")
	if errResp != nil {
		return *errResp
	}
	roleIDs, errResp := e.roleRefs(data.Relationships.Roles.value)
	if errResp != nil {
		return *errResp
	}
	now := e.now()
	u := &user{ID: newUUID(), Email: email, ServiceAccount: serviceAccount, Verified: serviceAccount,
		RoleIDs: roleIDs, CreatedAt: now, ModifiedAt: now}
	if a.Name.set {
		u.Name = &a.Name.value
	}
	u.Title = a.Title.value
	e.org.Users[u.ID] = u
	body := map[string]any{"data": e.userObject(u, true)}
	if len(roleIDs) > 0 { // recorded with roles; without, Datadog sends no "included"
		body["included"] = e.includedRoles(u)
	}
	return response{status: http.StatusCreated, body: body}
}

// checkEmail validates an email for the user with id self ("" for a new
// one). Datadog refuses a second active user with the same email: 409.
func (e *Emulator) checkEmail(email, self string) (string, *response) {
	email = strings.ToLower(strings.TrimSpace(email))
	if local, domain, found := strings.Cut(email, "@"); !found || local == "" || domain == "" {
		resp := errorResponse(http.StatusBadRequest, "Invalid email")
		return "", &resp
	}
	for _, u := range e.org.Users {
		if u.Email == email && u.ID != self && !u.Disabled {
			resp := errorResponse(http.StatusConflict, "User with email "+email+" already exists")
			return "", &resp
		}
	}
	return email, nil
}

// roleRefs resolves a roles relationship to role ids.
func (e *Emulator) roleRefs(rel toMany) ([]string, *response) {
	ids := []string{}
	for _, d := range rel.Data {
		if e.org.Roles[d.ID] == nil || d.Type != "" && d.Type != "roles" {
			resp := errorResponse(http.StatusBadRequest, fmt.Sprintf("Role %q does not exist", d.ID))
			return nil, &resp
		}
		if !slices.Contains(ids, d.ID) {
			ids = append(ids, d.ID)
		}
	}
	return ids, nil
}

func (e *Emulator) getUser(r *request) response {
	u := e.org.Users[r.params["user_id"]]
	if u == nil {
		return userNotFound(r.params["user_id"])
	}
	return ok(map[string]any{"data": e.userObject(u, true), "included": e.userRoles(u)})
}

func (e *Emulator) updateUser(r *request) response {
	id := r.params["user_id"]
	u := e.org.Users[id]
	if u == nil {
		return userNotFound(id)
	}
	data, errResp := decodeDocument[userAttributes](r, "users")
	if errResp != nil {
		return *errResp
	}
	if data.ID != id {
		return errorResponse(http.StatusUnprocessableEntity, "User ID in the body does not match the path")
	}
	a := data.Attributes
	email := u.Email
	if a.Email.set {
		if email, errResp = e.checkEmail(a.Email.value, id); errResp != nil {
			return *errResp
		}
	}
	u.Email = email
	if a.Name.set {
		u.Name = &a.Name.value
	}
	if a.Title.set {
		u.Title = a.Title.value
	}
	if a.Disabled.set {
		u.Disabled = a.Disabled.value
	}
	u.ModifiedAt = e.now()
	return ok(map[string]any{"data": e.userObject(u, true), "included": e.userRoles(u)})
}

// disableUser disables a user or service account: its keys and tokens stay
// but no longer authenticate. Disabling twice answers 404, as recorded.
func (e *Emulator) disableUser(r *request) response {
	u := e.org.Users[r.params["user_id"]]
	if u == nil || u.Disabled {
		return userNotFound(r.params["user_id"])
	}
	u.Disabled = true
	u.ModifiedAt = e.now()
	return noContent
}

func (e *Emulator) listUsers(r *request) response {
	q := r.URL.Query()
	size, number, errResp := pageParams(q, maxPageSize)
	if errResp != nil {
		return *errResp
	}
	field, descending := strings.CutPrefix(cmp.Or(q.Get("sort"), "name"), "-")
	if q.Get("sort_dir") == "desc" {
		descending = !descending
	}
	filter := strings.ToLower(q.Get("filter"))
	statuses := splitList(q["filter[status]"])
	var matched []*user
	for _, u := range e.org.Users {
		name := ""
		if u.Name != nil {
			name = strings.ToLower(*u.Name)
		}
		if (strings.Contains(u.Email, filter) || strings.Contains(name, filter) || strings.Contains(u.handle(), filter)) &&
			(len(statuses) == 0 || slices.Contains(statuses, u.status())) {
			matched = append(matched, u)
		}
	}
	slices.SortFunc(matched, func(a, b *user) int {
		var c int
		switch field {
		case "email":
			c = cmp.Compare(a.Email, b.Email)
		case "modified_at":
			c = a.ModifiedAt.Compare(b.ModifiedAt)
		case "created_at":
			c = a.CreatedAt.Compare(b.CreatedAt)
		case "status":
			c = cmp.Compare(a.status(), b.status())
		default:
			c = cmp.Compare(nameOf(a), nameOf(b))
		}
		if descending {
			c = -c
		}
		return cmp.Or(c, a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	page := pageOf(matched, size, number)
	data := make([]any, len(page))
	included := []any{}
	seen := map[string]bool{}
	for i, u := range page {
		data[i] = e.userObject(u, true)
		for _, id := range u.RoleIDs {
			if ro := e.org.Roles[id]; ro != nil && !seen[id] {
				seen[id] = true
				included = append(included, e.roleObject(ro, viewIncluded))
			}
		}
	}
	return ok(map[string]any{
		"data":     data,
		"included": included,
		"meta":     map[string]any{"page": map[string]any{"total_count": len(e.org.Users), "total_filtered_count": len(matched)}},
	})
}

func nameOf(u *user) string {
	if u.Name == nil {
		return ""
	}
	return *u.Name
}

// roleAttributes are the writable attributes of a role.
type roleAttributes struct {
	Name                     optional[string] `json:"name"`
	DefaultPermissionsOptOut optional[bool]   `json:"default_permissions_opt_out"`
}

func roleNotFound() response { return errorResponse(http.StatusNotFound, "Role not found") }

// checkRoleName validates a role name for the role with id self ("" for a
// new one): names are unique.
func (e *Emulator) checkRoleName(name, self string) *response {
	if strings.TrimSpace(name) == "" {
		resp := errorResponse(http.StatusBadRequest, "name is required")
		return &resp
	}
	for _, r := range e.org.Roles {
		if strings.EqualFold(r.Name, name) && r.ID != self {
			resp := errorResponse(http.StatusConflict, "Role with name "+name+" already exists")
			return &resp
		}
	}
	return nil
}

// permissionRefs resolves a permissions relationship to permission names.
func permissionRefs(rel toMany) ([]string, *response) {
	names := []string{}
	for _, d := range rel.Data {
		name, known := permissionByID[d.ID]
		if !known || d.Type != "" && d.Type != "permissions" {
			resp := errorResponse(http.StatusBadRequest, fmt.Sprintf("Permission %q does not exist", d.ID))
			return nil, &resp
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names, nil
}

// createRole answers 200, not 201, as recorded and specified.
func (e *Emulator) createRole(r *request) response {
	data, errResp := decodeDocument[roleAttributes](r, "roles")
	if errResp != nil {
		return *errResp
	}
	if errResp := e.checkRoleName(data.Attributes.Name.value, ""); errResp != nil {
		return *errResp
	}
	perms, errResp := permissionRefs(data.Relationships.Permissions.value)
	if errResp != nil {
		return *errResp
	}
	if !data.Attributes.DefaultPermissionsOptOut.value {
		for _, p := range defaultRolePermissions {
			if !slices.Contains(perms, p) {
				perms = append(perms, p)
			}
		}
	}
	now := e.now()
	ro := &role{ID: newUUID(), Name: data.Attributes.Name.value, Permissions: perms, CreatedAt: now, ModifiedAt: now}
	e.org.Roles[ro.ID] = ro
	return ok(map[string]any{"data": e.roleObject(ro, viewCreated)})
}

func (e *Emulator) getRole(r *request) response {
	ro := e.org.Roles[r.params["role_id"]]
	if ro == nil {
		return roleNotFound()
	}
	return ok(map[string]any{"data": e.roleObject(ro, viewRead)})
}

func (e *Emulator) updateRole(r *request) response {
	id := r.params["role_id"]
	ro := e.org.Roles[id]
	if ro == nil {
		return roleNotFound()
	}
	data, errResp := decodeDocument[roleAttributes](r, "roles")
	if errResp != nil {
		return *errResp
	}
	if data.ID != id {
		return errorResponse(http.StatusUnprocessableEntity, "Role ID in the body does not match the path")
	}
	if ro.Managed {
		return errorResponse(http.StatusBadRequest, "Datadog managed roles cannot be modified")
	}
	name := data.Attributes.Name
	if name.set {
		if errResp := e.checkRoleName(name.value, id); errResp != nil {
			return *errResp
		}
	}
	perms := ro.Permissions
	if data.Relationships.Permissions.set {
		if perms, errResp = permissionRefs(data.Relationships.Permissions.value); errResp != nil {
			return *errResp
		}
	}
	if name.set {
		ro.Name = name.value
	}
	ro.Permissions = perms
	ro.ModifiedAt = e.now()
	return ok(map[string]any{"data": e.roleObject(ro, viewUpdated)})
}

func (e *Emulator) deleteRole(r *request) response {
	ro := e.org.Roles[r.params["role_id"]]
	if ro == nil {
		return roleNotFound()
	}
	if ro.Managed {
		return errorResponse(http.StatusBadRequest, "Datadog managed roles cannot be deleted")
	}
	delete(e.org.Roles, ro.ID)
	for _, u := range e.org.Users {
		u.RoleIDs = slices.DeleteFunc(u.RoleIDs, func(id string) bool { return id == ro.ID })
	}
	return noContent
}

func (e *Emulator) listRoles(r *request) response {
	q := r.URL.Query()
	size, number, errResp := pageParams(q, maxPageSize)
	if errResp != nil {
		return *errResp
	}
	field, descending := strings.CutPrefix(cmp.Or(q.Get("sort"), "name"), "-")
	filter := strings.ToLower(q.Get("filter"))
	ids := splitList(q["filter[id]"])
	var matched []*role
	for _, ro := range e.org.Roles {
		if strings.Contains(strings.ToLower(ro.Name), filter) && (len(ids) == 0 || slices.Contains(ids, ro.ID)) {
			matched = append(matched, ro)
		}
	}
	slices.SortFunc(matched, func(a, b *role) int {
		var c int
		switch field {
		case "modified_at":
			c = a.ModifiedAt.Compare(b.ModifiedAt)
		case "user_count":
			c = cmp.Compare(e.userCount(a.ID), e.userCount(b.ID))
		default:
			c = cmp.Compare(a.Name, b.Name)
		}
		if descending {
			c = -c
		}
		return cmp.Or(c, cmp.Compare(a.ID, b.ID))
	})
	page := pageOf(matched, size, number)
	data := make([]any, len(page))
	for i, ro := range page {
		data[i] = e.roleObject(ro, viewList)
	}
	return ok(map[string]any{
		"data": data,
		"meta": map[string]any{"page": map[string]any{"total_count": len(e.org.Roles), "total_filtered_count": len(matched)}},
	})
}
