package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// adminPrefix is where the emulator's own endpoints live, under a path
// Datadog does not use. They take no authentication: they exist so that
// tests can inspect and change an emulator running in another process.
const adminPrefix = "/_emulator/"

// serveAdmin answers
//
//	GET    /_emulator/keys                {"keys":[Key...]}, oldest first
//	DELETE /_emulator/keys/{id}           204, or 404 for an unknown id
//	POST   /_emulator/keys/{id}/leak      optional {"source":"github"}; the Key, or 404
//	POST   /_emulator/keys/{id}/backdate  {"by":"2h"}; the Key, or 404
//	GET    /_emulator/endpoints           {"endpoints":[Endpoint...]}
//	GET    /_emulator/clock               {"now":...,"advance":"0s"}
//	POST   /_emulator/clock               {"advance":"25h"} or {"set":"2030-01-01T00:00:00Z"}
//	GET    /_emulator/rate_limits         {"rate_limits":{group:{"limit":..,"period":..}},"groups":[...]}
//	PUT    /_emulator/rate_limits/{group} {"limit":5,"period":"10s"}; a limit of 0 removes it
//	DELETE /_emulator/rate_limits/{group}
//	GET    /_emulator/faults              {"faults":[Fault...]}
//	POST   /_emulator/faults              Fault; answers 201 with its id
//	DELETE /_emulator/faults              removes them all
//	DELETE /_emulator/faults/{id}
//	GET    /_emulator/events              {"events":[Event...]}, oldest first
//	GET    /_emulator/org                 {"one_time_read":true,"max_api_keys":50,"api_keys":4,"api_keys_peak":4}
//	PATCH  /_emulator/org                 {"one_time_read":false}, {"max_api_keys":5}, {"reset_api_keys_peak":true}:
//	                                      the organisation's settings; answers as GET
func (e *Emulator) serveAdmin(r *http.Request) response {
	resource, id, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, adminPrefix), "/")
	switch r.Method + " " + resource {
	case "GET keys":
		return ok(map[string]any{"keys": e.Keys()})
	case "POST keys":
		return e.serveKeyAction(r, id)
	case "DELETE keys":
		if e.DeleteKey(id) {
			return noContent
		}
		return errorResponse(http.StatusNotFound, "Key not found")
	case "GET endpoints":
		return ok(map[string]any{"endpoints": e.Endpoints()})
	case "GET clock":
		return e.clockState()
	case "POST clock":
		var body struct {
			Advance jsonDuration `json:"advance"`
			Set     *time.Time   `json:"set"`
		}
		if errResp := decodeAdmin(r, &body); errResp != nil {
			return *errResp
		}
		d := time.Duration(body.Advance)
		if body.Set != nil {
			d = body.Set.Sub(e.now())
		}
		e.Advance(d)
		return e.clockState()
	case "GET rate_limits":
		return ok(map[string]any{"rate_limits": e.RateLimits(), "groups": RateLimitGroups()})
	case "PUT rate_limits", "DELETE rate_limits":
		var l RateLimit
		if r.Method == http.MethodPut {
			if errResp := decodeAdmin(r, &l); errResp != nil {
				return *errResp
			}
		}
		if err := e.SetRateLimit(id, l); err != nil {
			return errorResponse(http.StatusBadRequest, err.Error())
		}
		if l.Limit == 0 {
			return noContent
		}
		return ok(l)
	case "GET events":
		return ok(map[string]any{"events": e.Events()})
	case "GET org":
		return e.orgSettings()
	case "PATCH org":
		var body struct {
			OneTimeRead      *bool `json:"one_time_read"`
			MaxAPIKeys       *int  `json:"max_api_keys"`
			ResetAPIKeysPeak bool  `json:"reset_api_keys_peak"`
		}
		if errResp := decodeAdmin(r, &body); errResp != nil {
			return *errResp
		}
		// The only setting that can be refused goes first, so that a
		// refused PATCH changes nothing.
		if body.MaxAPIKeys != nil {
			if err := e.SetMaxAPIKeys(*body.MaxAPIKeys); err != nil {
				return errorResponse(http.StatusBadRequest, err.Error())
			}
		}
		if body.OneTimeRead != nil {
			e.SetOneTimeRead(*body.OneTimeRead)
		}
		if body.ResetAPIKeysPeak {
			e.ResetAPIKeyPeak()
		}
		return e.orgSettings()
	case "GET faults":
		return ok(map[string]any{"faults": e.Faults()})
	case "POST faults":
		var f Fault
		if errResp := decodeAdmin(r, &f); errResp != nil {
			return *errResp
		}
		added, err := e.AddFault(f)
		if err != nil {
			return errorResponse(http.StatusBadRequest, err.Error())
		}
		return response{status: http.StatusCreated, body: added}
	case "DELETE faults":
		if id == "" {
			e.ClearFaults()
			return noContent
		}
		if e.RemoveFault(id) {
			return noContent
		}
		return errorResponse(http.StatusNotFound, "Fault not found")
	}
	return notFound
}

func (e *Emulator) orgSettings() response {
	e.mu.Lock()
	defer e.mu.Unlock()
	return ok(map[string]any{
		"one_time_read": !e.org.OneTimeReadOff,
		"max_api_keys":  e.org.MaxAPIKeys,
		"api_keys":      e.apiKeyCount(),
		"api_keys_peak": e.org.APIKeysPeak,
	})
}

func (e *Emulator) clockState() response {
	return ok(map[string]any{"now": formatTime(e.now()), "advance": time.Duration(e.advance.Load()).String()})
}

func decodeAdmin(r *http.Request, v any) *response {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields() // a misspelt field would silently do nothing
	if err := dec.Decode(v); err != nil {
		resp := errorResponse(http.StatusBadRequest, "Invalid JSON body: "+err.Error())
		return &resp
	}
	return nil
}
