// Package permissions lists the Datadog permission (scope) names and the
// permission each API operation requires, as published in the OpenAPI
// specification shipped with datadog-api-client-go. The data is generated
// so that it moves with the client version pinned in go.mod.
package permissions

//go:generate go run ./gen

import (
	"slices"
	"strings"
)

// Operators of a Requirement, as spelled in the spec's x-permission.
const (
	OperatorOR   = "OR"   // any one of Permissions suffices
	OperatorAND  = "AND"  // all of Permissions are needed
	OperatorOPEN = "OPEN" // any authenticated caller may call the operation
)

// Requirement is the x-permission of one API operation.
type Requirement struct {
	Operator    string
	Permissions []string
}

// IsKnown reports whether name is a Datadog permission or OAuth scope name,
// and so a valid scope for an application key.
func IsKnown(name string) bool {
	_, found := slices.BinarySearch(Names, name)
	return found
}

// Required returns the permission requirement of the operation with the
// given HTTP method and spec path template (e.g. "/api/v2/api_keys/{api_key_id}").
// ok is false when the spec states none.
func Required(method, pathTemplate string) (req Requirement, ok bool) {
	req, ok = Operations[strings.ToUpper(method)+" "+pathTemplate]
	return req, ok
}

// SatisfiedBy reports whether a caller holding the permissions for which
// has returns true meets the requirement.
func (r Requirement) SatisfiedBy(has func(permission string) bool) bool {
	if r.Operator == OperatorOPEN || len(r.Permissions) == 0 {
		return true
	}
	if r.Operator == OperatorAND {
		return !slices.ContainsFunc(r.Permissions, func(p string) bool { return !has(p) })
	}
	// OR, and anything the spec might add later, needs at least one.
	return slices.ContainsFunc(r.Permissions, has)
}

// OperationID returns the spec's operationId of the operation with the given
// HTTP method and path template, or "" if the spec has no such operation.
func OperationID(method, pathTemplate string) string {
	return OperationIDs[strings.ToUpper(method)+" "+pathTemplate]
}

// OperationByID returns the HTTP method and path template of the operation
// of API version ("v1" or "v2") with the given operationId: the two versions
// reuse some ids (DisableUser, Validate).
func OperationByID(version, id string) (method, pathTemplate string, ok bool) {
	for key, opID := range OperationIDs {
		method, pathTemplate, _ = strings.Cut(key, " ")
		if opID == id && strings.HasPrefix(pathTemplate, "/api/"+version+"/") {
			return method, pathTemplate, true
		}
	}
	return "", "", false
}
