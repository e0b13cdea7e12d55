package acceptance

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2"
)

// Kinds of the objects a run can leave in Datadog.
const (
	objAPIKey         = "API key"
	objAppKey         = "application key"
	objSAAppKey       = "service account application key"
	objPAT            = "personal access token"
	objSAT            = "service access token"
	objServiceAccount = "service account"
)

// ddObject is one object found in Datadog by a sweep.
type ddObject struct {
	Kind, ID, Name string
	Owner          string // the service account, for its keys and tokens
}

func (o ddObject) String() string { return fmt.Sprintf("%s %s (%s)", o.Kind, o.ID, o.Name) }

// sweeper finds and deletes what a run made, by name only: objects whose
// name starts with the run's prefix, or with vault-root-<marker>- for the
// markers of the run's own mounts (a rotation's root keys). It never
// changes or deletes anything else: every delete checks the name again.
type sweeper struct {
	d       *dd
	c       creds // the user's keys
	selfID  string
	prefix  string
	markers []string
	sas     []string // service accounts whose keys and tokens to look through
}

// owned reports whether a name is the run's.
func (sw *sweeper) owned(name string) bool {
	if strings.HasPrefix(name, sw.prefix) {
		return true
	}
	for _, m := range sw.markers {
		if strings.HasPrefix(name, "vault-root-"+m+"-") {
			return true
		}
	}
	return false
}

// filters are the name filters each listing is asked for.
func (sw *sweeper) filters() []string {
	f := []string{sw.prefix}
	for _, m := range sw.markers {
		f = append(f, "vault-root-"+m+"-")
	}
	return f
}

const sweepPages = 10

// list finds every object of the run still in Datadog. A listing that
// fails is reported and the others go on.
func (sw *sweeper) list(ctx context.Context) ([]ddObject, []error) {
	var found []ddObject
	var errs []error
	seen := map[string]bool{}
	add := func(o ddObject) {
		if sw.owned(o.Name) && !seen[o.Kind+"/"+o.ID] {
			seen[o.Kind+"/"+o.ID] = true
			found = append(found, o)
		}
	}
	note := func(what string, a answer) {
		errs = append(errs, fmt.Errorf("listing %s: %s", what, a))
	}
	api := sw.d.normal
	cctx := sw.d.ctx(ctx, sw.c)

	// Service accounts the run made: their keys and tokens are looked
	// through too, and they are disabled last.
	sas := slices.Clone(sw.sas)
	for page := int64(0); page < sweepPages; page++ {
		out, resp, err := api.users.ListUsers(cctx, *datadogV2.NewListUsersOptionalParameters().WithFilter(sw.prefix).WithPageSize(100).WithPageNumber(page))
		if err != nil {
			note("users and service accounts", answerOf(resp, err))
			break
		}
		for _, u := range out.GetData() {
			attrs := u.GetAttributes()
			name := attrs.GetName()
			if !strings.HasPrefix(attrs.GetEmail(), sw.prefix) && !strings.HasPrefix(name, sw.prefix) {
				continue
			}
			if !attrs.GetServiceAccount() {
				continue
			}
			if !slices.Contains(sas, u.GetId()) {
				sas = append(sas, u.GetId())
			}
			if !attrs.GetDisabled() {
				label := attrs.GetEmail()
				if strings.HasPrefix(name, sw.prefix) {
					label = name
				}
				add(ddObject{Kind: objServiceAccount, ID: u.GetId(), Name: label})
			}
		}
		if len(out.GetData()) < 100 {
			break
		}
	}

	// Everything the run named carries its prefix; the root keys a
	// rotation made (application keys of the user, access tokens of a
	// service account) carry a mount's marker instead.
	for _, filter := range sw.filters() {
		roots := filter != sw.prefix
		if !roots {
			for page := int64(0); page < sweepPages; page++ {
				out, resp, err := api.keys.ListAPIKeys(cctx, *datadogV2.NewListAPIKeysOptionalParameters().WithFilter(filter).WithPageSize(100).WithPageNumber(page))
				if err != nil {
					note("API keys", answerOf(resp, err))
					break
				}
				for _, k := range out.GetData() {
					attrs := k.GetAttributes()
					add(ddObject{Kind: objAPIKey, ID: k.GetId(), Name: attrs.GetName()})
				}
				if len(out.GetData()) < 100 {
					break
				}
			}
			for page := int64(0); page < sweepPages; page++ {
				opts := datadogV2.NewListPersonalAccessTokensOptionalParameters().WithFilter(filter).WithPageSize(100).WithPageNumber(page)
				if sw.selfID != "" {
					opts = opts.WithFilterOwnedBy([]string{sw.selfID})
				}
				out, resp, err := api.keys.ListPersonalAccessTokens(cctx, *opts)
				if err != nil {
					note("personal access tokens", answerOf(resp, err))
					break
				}
				for _, t := range out.GetData() {
					if string(t.GetType()) != string(datadogV2.PERSONALACCESSTOKENSTYPE_PERSONAL_ACCESS_TOKENS) {
						continue // the organisation's list holds service access tokens too
					}
					attrs := t.GetAttributes()
					add(ddObject{Kind: objPAT, ID: t.GetId(), Name: attrs.GetName()})
				}
				if len(out.GetData()) < 100 {
					break
				}
			}
			for _, sa := range sas {
				for page := int64(0); page < sweepPages; page++ {
					out, resp, err := api.sa.ListServiceAccountApplicationKeys(cctx, sa,
						*datadogV2.NewListServiceAccountApplicationKeysOptionalParameters().WithFilter(filter).WithPageSize(100).WithPageNumber(page))
					if err != nil {
						note("application keys of service account "+sa, answerOf(resp, err))
						break
					}
					for _, k := range out.GetData() {
						attrs := k.GetAttributes()
						add(ddObject{Kind: objSAAppKey, ID: k.GetId(), Name: attrs.GetName(), Owner: sa})
					}
					if len(out.GetData()) < 100 {
						break
					}
				}
			}
		}
		for page := int64(0); page < sweepPages; page++ {
			out, resp, err := api.keys.ListCurrentUserApplicationKeys(cctx,
				*datadogV2.NewListCurrentUserApplicationKeysOptionalParameters().WithFilter(filter).WithPageSize(100).WithPageNumber(page))
			if err != nil {
				note("the user's application keys", answerOf(resp, err))
				break
			}
			for _, k := range out.GetData() {
				attrs := k.GetAttributes()
				add(ddObject{Kind: objAppKey, ID: k.GetId(), Name: attrs.GetName()})
			}
			if len(out.GetData()) < 100 {
				break
			}
		}
		for _, sa := range sas {
			tokens, a := sw.d.serviceAccountTokens(ctx, sw.c, sa, filter)
			if a.Status != http.StatusOK {
				note("access tokens of service account "+sa, a)
			}
			for _, t := range tokens {
				add(ddObject{Kind: objSAT, ID: t.ID, Name: t.Name, Owner: sa})
			}
		}
	}
	// Keys and tokens go before the service accounts that own them.
	slices.SortStableFunc(found, func(a, b ddObject) int {
		return boolInt(a.Kind == objServiceAccount) - boolInt(b.Kind == objServiceAccount)
	})
	return found, errs
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// remove deletes (revokes, disables) one object of the run. Already gone
// (404) counts as done.
func (sw *sweeper) remove(ctx context.Context, o ddObject) error {
	if !sw.owned(o.Name) {
		return fmt.Errorf("refusing to delete %s: its name is not the run's", o)
	}
	api := sw.d.normal
	cctx := sw.d.ctx(ctx, sw.c)
	var resp *http.Response
	var err error
	switch o.Kind {
	case objAPIKey:
		resp, err = api.keys.DeleteAPIKey(cctx, o.ID)
	case objAppKey:
		resp, err = api.keys.DeleteCurrentUserApplicationKey(cctx, o.ID)
	case objSAAppKey:
		resp, err = api.sa.DeleteServiceAccountApplicationKey(cctx, o.Owner, o.ID)
	case objPAT:
		resp, err = api.keys.RevokePersonalAccessToken(cctx, o.ID)
	case objSAT:
		resp, err = api.sa.RevokeServiceAccountAccessToken(cctx, o.Owner, o.ID)
	case objServiceAccount:
		resp, err = api.users.DisableUser(cctx, o.ID)
	default:
		return fmt.Errorf("unknown kind %q", o.Kind)
	}
	a := answerOf(resp, err)
	if err != nil && a.Status != http.StatusNotFound {
		return fmt.Errorf("deleting %s: %s", o, a)
	}
	return nil
}

// sweepAll lists and deletes; it returns what it found and what it could
// not delete.
func (sw *sweeper) sweepAll(ctx context.Context) (found []ddObject, errs []error) {
	found, errs = sw.list(ctx)
	for _, o := range found {
		if err := sw.remove(ctx, o); err != nil {
			errs = append(errs, err)
		}
	}
	return found, errs
}

// SweepOptions is a sweep on its own: make acceptance-sweep RUN=<prefix>.
type SweepOptions struct {
	Run      string // the run's prefix or id
	StateDir string // where runs keep their journals
	Getenv   func(string) string
	Log      func(format string, args ...any)
}

// Sweep deletes everything a run left in the Datadog of the environment
// (DD_API_KEY, DD_APP_KEY, DD_SITE, DD_API_URL; DD_SERVICE_ACCOUNT_ID adds
// that service account's keys and tokens). It reads the run's journal
// when there is one, for the markers of its mounts. It returns how many
// objects it found, and an error if any is left.
func Sweep(ctx context.Context, opts SweepOptions) (int, error) {
	runID, err := ParseRun(opts.Run)
	if err != nil {
		return 0, err
	}
	getenv := opts.Getenv
	t, err := targetFromEnv(getenv)
	if err != nil {
		return 0, err
	}
	defer t.close()
	if t.mode == "emulator" {
		return 0, fmt.Errorf("set %s, %s and %s (and %s for an emulator or a proxy) to say which Datadog to sweep", EnvAPIKey, EnvAppKey, EnvSite, EnvAPIURL)
	}
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	st, found, err := readJournal(opts.StateDir, runID)
	if err != nil {
		return 0, err
	}
	if found {
		logf("journal %s: mounts %v, service accounts %v", journalPath(opts.StateDir, runID), st.Mounts, st.ServiceAccounts)
	} else {
		logf("no journal for run %s in %s: sweeping by prefix alone (root keys a rotation made, named vault-root-<marker>-…, are not found that way)", runID, opts.StateDir)
	}
	d, err := newDD(t.apiURL.String(), t.site, 200*time.Millisecond, nil)
	if err != nil {
		return 0, err
	}
	self, a := d.currentUser(ctx, t.given.keys())
	if a.Err != nil {
		return 0, fmt.Errorf("the keys of %s and %s do not work: %s", EnvAPIKey, EnvAppKey, a)
	}
	sas := st.ServiceAccounts
	if sa := t.given.ServiceAccountID; sa != "" && !slices.Contains(sas, sa) {
		sas = append(sas, sa)
	}
	sw := &sweeper{d: d, c: t.given.keys(), selfID: self, prefix: prefixOf(runID), markers: st.markers(), sas: sas}
	objects, errs := sw.sweepAll(ctx)
	for _, o := range objects {
		logf("deleted %s", o)
	}
	left, more := sw.list(ctx)
	errs = append(errs, more...)
	for _, o := range left {
		errs = append(errs, fmt.Errorf("still there: %s", o))
	}
	if len(errs) == 0 && found {
		os.Remove(journalPath(opts.StateDir, runID))
	}
	return len(objects), errors.Join(errs...)
}
