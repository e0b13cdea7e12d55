package emulator

import (
	"net/http"
	"strings"
)

// adminPrefix is where the emulator's own endpoints live, under a path
// Datadog does not use. They take no authentication: they exist so that
// tests can inspect and change an emulator running in another process.
const adminPrefix = "/_emulator/"

// serveAdmin answers
//
//	GET    /_emulator/keys       {"keys":[Key...]}, oldest first
//	DELETE /_emulator/keys/{id}  204, or 404 for an unknown id
func (e *Emulator) serveAdmin(r *http.Request) response {
	rest := strings.TrimPrefix(r.URL.Path, adminPrefix)
	switch {
	case rest == "keys" && r.Method == http.MethodGet:
		return ok(map[string]any{"keys": e.Keys()})
	case strings.HasPrefix(rest, "keys/") && r.Method == http.MethodDelete:
		if e.DeleteKey(strings.TrimPrefix(rest, "keys/")) {
			return response{status: http.StatusNoContent}
		}
		return errorResponse(http.StatusNotFound, "Key not found")
	}
	return notFound
}
