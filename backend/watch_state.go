package backend

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2"
)

// objectState is what Datadog says of a live object: whether it found it
// leaked, and when it was created and last used.
type objectState struct {
	Leak *leakInfo // nil: not flagged as leaked
	// LastUsed is Datadog's last use of the object: application keys'
	// last_used_at, API keys' date_last_used, tokens' last_used_at. Nil
	// when never used (Datadog also forgets uses older than 90 days).
	LastUsed  *time.Time
	CreatedAt time.Time // zero when Datadog did not say
}

// leakInfo is the leak Datadog found an object in: its leak_information
// relationship, and the LeakedKey when Datadog included it.
type leakInfo struct {
	ID     string
	Date   *time.Time
	Source string
}

func (l *leakInfo) String() string {
	switch {
	case l.Date != nil && l.Source != "":
		return fmt.Sprintf("leak %s, found %s in %s", l.ID, l.Date.UTC().Format(time.RFC3339), l.Source)
	case l.Source != "":
		return fmt.Sprintf("leak %s, found in %s", l.ID, l.Source)
	}
	return "leak " + l.ID
}

// State reads an object where it lives, as Exists does. Tokens are read
// with their LeakedKey included (?include=leak_information, which the
// specification offers for tokens only); for keys the relationship alone
// says it, and a LeakedKey Datadog includes unasked is read too.
func (c *datadogClient) State(ctx context.Context, o datadogObject) (objectState, error) {
	var st objectState
	err := c.call(ctx, describeKind(o.Kind)+" look-up", true, func(ctx context.Context) (resp *http.Response, err error) {
		withLeak := []datadogV2.PersonalAccessTokensIncludeQueryParameterItem{datadogV2.PERSONALACCESSTOKENSINCLUDEQUERYPARAMETERITEM_LEAK_INFORMATION}
		switch {
		case o.Kind == kindApplicationKey:
			var out datadogV2.ApplicationKeyResponse
			if c.ownedBySelf(o) {
				out, resp, err = c.keys.GetCurrentUserApplicationKey(ctx, o.ID)
			} else {
				out, resp, err = c.keys.GetApplicationKey(ctx, o.ID)
			}
			data := out.GetData()
			attrs := data.GetAttributes()
			rels := data.GetRelationships()
			st = objectState{Leak: leakOf(rels.AdditionalProperties), LastUsed: nullableTime(attrs.GetLastUsedAtOk()), CreatedAt: attrs.GetCreatedAt()}
			for _, inc := range out.GetIncluded() {
				st.Leak.fill(inc.LeakedKey)
			}
		case o.Kind == kindServiceAccountApplicationKey:
			var out datadogV2.PartialApplicationKeyResponse
			out, resp, err = c.serviceAccounts.GetServiceAccountApplicationKey(ctx, o.Owner, o.ID)
			data := out.GetData()
			attrs := data.GetAttributes()
			rels := data.GetRelationships()
			st = objectState{Leak: leakOf(rels.AdditionalProperties), CreatedAt: parseDatadogTime(attrs.GetCreatedAt())}
			if used, ok := attrs.GetLastUsedAtOk(); ok && used != nil {
				if t := parseDatadogTime(*used); !t.IsZero() {
					st.LastUsed = &t
				}
			}
			for _, inc := range out.GetIncluded() {
				st.Leak.fill(inc.LeakedKey)
			}
		case o.Kind == kindPersonalAccessToken:
			var out datadogV2.PersonalAccessTokenResponse
			out, resp, err = c.keys.GetPersonalAccessToken(ctx, o.ID, *datadogV2.NewGetPersonalAccessTokenOptionalParameters().WithInclude(withLeak))
			data := out.GetData()
			attrs := data.GetAttributes()
			rels := data.GetRelationships()
			st = objectState{Leak: tokenLeak(rels.LeakInformation), LastUsed: nullableTime(attrs.GetLastUsedAtOk()), CreatedAt: attrs.GetCreatedAt()}
			for _, inc := range out.GetIncluded() {
				st.Leak.fill(inc.LeakedKey)
			}
		case o.Kind == kindServiceAccessToken:
			var out datadogV2.ServiceAccessTokenResponse
			out, resp, err = c.serviceAccounts.GetServiceAccountAccessToken(ctx, o.Owner, o.ID, *datadogV2.NewGetServiceAccountAccessTokenOptionalParameters().WithInclude(withLeak))
			data := out.GetData()
			attrs := data.GetAttributes()
			rels := data.GetRelationships()
			st = objectState{Leak: tokenLeak(rels.LeakInformation), LastUsed: nullableTime(attrs.GetLastUsedAtOk()), CreatedAt: attrs.GetCreatedAt()}
			for _, inc := range out.GetIncluded() {
				st.Leak.fill(inc.LeakedKey)
			}
		case o.Kind == kindAPIKey:
			var out datadogV2.APIKeyResponse
			out, resp, err = c.keys.GetAPIKey(ctx, o.ID)
			data := out.GetData()
			attrs := data.GetAttributes()
			rels := data.GetRelationships()
			st = objectState{Leak: leakOf(rels.AdditionalProperties), LastUsed: nullableTime(attrs.GetDateLastUsedOk()), CreatedAt: attrs.GetCreatedAt()}
			for _, inc := range out.GetIncluded() {
				st.Leak.fill(inc.LeakedKey)
			}
		default:
			err = fmt.Errorf("unsupported Datadog object kind %q", o.Kind)
		}
		return resp, err
	})
	if err = c.notFoundHere(o, err); err != nil {
		return objectState{}, err
	}
	return st, nil
}

// leakOf reads leak_information where client-go keeps relationships its
// models do not name (application and API keys): data null, or absent,
// for a clean key.
func leakOf(relationships map[string]interface{}) *leakInfo {
	rel, _ := relationships["leak_information"].(map[string]interface{})
	data, _ := rel["data"].(map[string]interface{})
	if data == nil {
		return nil
	}
	id, _ := data["id"].(string)
	return &leakInfo{ID: id}
}

func tokenLeak(rel *datadogV2.RelationshipToLeakedKey) *leakInfo {
	if rel == nil {
		return nil
	}
	data := rel.Data.Get()
	if data == nil {
		return nil
	}
	return &leakInfo{ID: data.GetId()}
}

// fill adds what an included LeakedKey says of the leak l points to.
func (l *leakInfo) fill(k *datadogV2.LeakedKey) {
	if l == nil || k == nil || k.GetId() != l.ID {
		return
	}
	attrs := k.GetAttributes()
	if date := attrs.GetDate(); !date.IsZero() {
		l.Date = &date
	}
	l.Source = attrs.GetLeakSource()
}

func nullableTime(t *time.Time, ok bool) *time.Time {
	if !ok || t == nil || t.IsZero() {
		return nil
	}
	return t
}
