package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Datadog's containment rules for calls authenticated with an access token
// (DataDog/documentation#39105, "Restrictions" on the personal access
// token and service access token pages): such a call cannot create or
// update application keys (revoking them is allowed); it can create or
// update a token only with a subset of its own scopes; it cannot create a
// token whose life extends past its own expiry. A call that breaks one is
// refused with 403. The messages are the emulator's own: the pages give
// the status, not the body.

// Refusals of the rules, as the emulator words them.
const (
	msgTokenAppKey = "Access tokens cannot create or update application keys; revoking them is allowed"
	msgSATMakesPAT = "Service access tokens cannot create personal access tokens"
	msgNoExpiry    = "The token must expire no later than the access token making the request, which expires at %s"
	msgOutlives    = "The token's expires_at %s is later than the expiry of the access token making the request, %s"
	msgWiderScopes = "Scopes %s are not among the scopes of the access token making the request; a token can only grant its own scopes"
)

// contained returns the 403 answer when the request's credential is an
// access token that may not leave k as the request would: created, or
// updated (scopesSet: the update sets scopes). nil when the call may go
// ahead; calls made with an application key are never refused here.
func (e *Emulator) contained(r *request, k *storedKey, creating, scopesSet bool) *response {
	caller := r.cred
	if caller == nil || !kinds[caller.Kind].revocable {
		return nil
	}
	refuse := func(format string, args ...any) *response {
		resp := errorResponse(http.StatusForbidden, fmt.Sprintf(format, args...))
		return &resp
	}
	if !kinds[k.Kind].revocable { // API keys are outside the rules: they carry no scopes
		if k.Kind == KindApplicationKey {
			return refuse(msgTokenAppKey)
		}
		return nil
	}
	// Assumed: the pages state the rules for a PAT making PATs or SATs and
	// for a SAT making SATs, not whether a SAT may make a PAT. Refused.
	if creating && caller.Kind == KindServiceAccessToken && k.Kind == KindPersonalAccessToken {
		return refuse(msgSATMakesPAT)
	}
	if creating || scopesSet {
		var wider []string
		for _, s := range k.Scopes {
			if !slices.Contains(caller.Scopes, s) {
				wider = append(wider, s)
			}
		}
		if len(wider) > 0 {
			return refuse(msgWiderScopes, strings.Join(wider, ", "))
		}
	}
	if creating && caller.ExpiresAt != nil {
		end := caller.ExpiresAt.UTC().Format(time.RFC3339)
		switch {
		case k.ExpiresAt == nil: // a service access token may be made without expiry: it would outlive the caller
			return refuse(msgNoExpiry, end)
		case k.ExpiresAt.After(*caller.ExpiresAt):
			return refuse(msgOutlives, k.ExpiresAt.UTC().Format(time.RFC3339), end)
		}
	}
	return nil
}
