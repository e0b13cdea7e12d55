package emulator_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulator"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/emulatortest"
	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// TestClientGoCompatibility drives the emulator with the official client,
// which parses responses strictly: an object whose fields do not match the
// spec (a timestamp without offset, say) lands in UnparsedObject.
func TestClientGoCompatibility(t *testing.T) {
	emu := emulatortest.Start(t, emulator.Options{})

	cfg := datadog.NewConfiguration()
	cfg.Host = strings.TrimPrefix(emu.URL, "http://") // Host and Scheme override the site's server URL
	cfg.Scheme = "http"
	client := datadog.NewAPIClient(cfg)
	keysCtx := func(appKey string) context.Context {
		return context.WithValue(context.Background(), datadog.ContextAPIKeys, map[string]datadog.APIKey{
			"apiKeyAuth": {Key: emu.APIKey()},
			"appKeyAuth": {Key: appKey},
		})
	}
	ctx := keysCtx(emu.AppKey())
	keys := datadogV2.NewKeyManagementApi(client)

	t.Run("validate", func(t *testing.T) {
		valid, _, err := keys.ValidateAPIKey(ctx)
		if err != nil || valid.Status != datadogV2.VALIDATEAPIKEYSTATUS_OK {
			t.Errorf("ValidateAPIKey = %+v, %v", valid, err)
		}
		v1, _, err := datadogV1.NewAuthenticationApi(client).Validate(ctx)
		if err != nil || !v1.GetValid() {
			t.Errorf("v1 Validate = %+v, %v", v1, err)
		}
		_, resp, err := keys.ValidateAPIKey(keysCtx("ddapp_wrong"))
		wantStatus(t, resp, err, http.StatusForbidden, "Forbidden")
	})

	t.Run("current user", func(t *testing.T) {
		me, _, err := datadogV2.NewUsersApi(client).GetCurrentUser(ctx)
		if err != nil {
			t.Fatal(err)
		}
		assertParsed(t, me)
		if me.Data.GetId() != emu.UserID() || me.Data.Attributes.GetEmail() != "admin@example.com" || me.Data.Attributes.CreatedAt == nil {
			t.Errorf("GetCurrentUser = %+v", me.Data)
		}
	})

	t.Run("permissions", func(t *testing.T) {
		list, _, err := datadogV2.NewRolesApi(client).ListPermissions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		assertParsed(t, list)
		var names []string
		for _, p := range list.Data {
			names = append(names, p.Attributes.GetName())
		}
		if !slices.Equal(names, permissions.Names) {
			t.Errorf("ListPermissions returned %d names, want the %d of permissions.Names", len(names), len(permissions.Names))
		}
	})

	t.Run("scoped application key", func(t *testing.T) {
		name := "vault-test-scoped"
		body := datadogV2.ApplicationKeyCreateRequest{Data: datadogV2.ApplicationKeyCreateData{
			Type: datadogV2.APPLICATIONKEYSTYPE_APPLICATION_KEYS,
			Attributes: datadogV2.ApplicationKeyCreateAttributes{
				Name:   name,
				Scopes: *datadog.NewNullableList(&[]string{"dashboards_read"}),
			},
		}}
		created, resp, err := keys.CreateCurrentUserApplicationKey(ctx, body)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("CreateCurrentUserApplicationKey: %v, %v", resp, err)
		}
		assertParsed(t, created)
		attrs := created.Data.Attributes
		if attrs.GetKey() == "" || attrs.CreatedAt == nil || !slices.Equal(attrs.GetScopes(), []string{"dashboards_read"}) {
			t.Errorf("created key attributes = %+v", attrs)
		}
		id := created.Data.GetId()

		fetched, _, err := keys.GetCurrentUserApplicationKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		assertParsed(t, fetched)
		if fetched.Data.Attributes.Key != nil || len(fetched.Included) == 0 {
			t.Errorf("GetCurrentUserApplicationKey = %+v", fetched)
		}

		list, _, err := keys.ListCurrentUserApplicationKeys(ctx, *datadogV2.NewListCurrentUserApplicationKeysOptionalParameters().WithFilter(name))
		if err != nil {
			t.Fatal(err)
		}
		assertParsed(t, list)
		if len(list.Data) != 1 || list.Data[0].GetId() != id || list.Meta.Page.GetTotalFilteredCount() != 1 || list.Meta.GetMaxAllowedPerUser() != 1000 {
			t.Errorf("ListCurrentUserApplicationKeys = %+v", list)
		}

		scoped := keysCtx(attrs.GetKey())
		if _, _, err := datadogV1.NewDashboardsApi(client).ListDashboards(scoped); err != nil {
			t.Errorf("in-scope ListDashboards: %v", err)
		}
		_, resp, err = datadogV1.NewMonitorsApi(client).ListMonitors(scoped)
		wantStatus(t, resp, err, http.StatusForbidden, "Forbidden")

		if resp, err := keys.DeleteCurrentUserApplicationKey(ctx, id); err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DeleteCurrentUserApplicationKey: %v, %v", resp, err)
		}
		resp, err = keys.DeleteCurrentUserApplicationKey(ctx, id)
		wantStatus(t, resp, err, http.StatusNotFound, "Application key not found")
	})

	t.Run("API key", func(t *testing.T) {
		name := "vault-test-agent"
		created, resp, err := keys.CreateAPIKey(ctx, datadogV2.APIKeyCreateRequest{Data: datadogV2.APIKeyCreateData{
			Type:       datadogV2.APIKEYSTYPE_API_KEYS,
			Attributes: datadogV2.APIKeyCreateAttributes{Name: name},
		}})
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("CreateAPIKey: %v, %v", resp, err)
		}
		assertParsed(t, created)
		attrs := created.Data.Attributes
		if len(attrs.GetKey()) != 32 || attrs.CreatedAt == nil || attrs.ModifiedAt == nil {
			t.Errorf("created API key attributes = %+v", attrs)
		}
		id := created.Data.GetId()

		fetched, _, err := keys.GetAPIKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		assertParsed(t, fetched)

		list, _, err := keys.ListAPIKeys(ctx, *datadogV2.NewListAPIKeysOptionalParameters().WithFilter(name))
		if err != nil {
			t.Fatal(err)
		}
		assertParsed(t, list)
		if len(list.Data) != 1 || list.Data[0].GetId() != id || list.Meta.Page.GetTotalFilteredCount() != 1 {
			t.Errorf("ListAPIKeys = %+v", list)
		}

		if resp, err := keys.DeleteAPIKey(ctx, id); err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DeleteAPIKey: %v, %v", resp, err)
		}
		resp, err = keys.DeleteAPIKey(ctx, id)
		wantStatus(t, resp, err, http.StatusNotFound, "API key not found")
	})

	t.Run("service account, its key and tokens", func(t *testing.T) {
		roles, _, err := datadogV2.NewRolesApi(client).ListRoles(ctx, *datadogV2.NewListRolesOptionalParameters().WithFilter("Standard"))
		if err != nil || len(roles.Data) != 1 {
			t.Fatalf("ListRoles = %+v, %v", roles, err)
		}
		assertParsed(t, roles)
		accounts := datadogV2.NewServiceAccountsApi(client)
		attrs := datadogV2.NewServiceAccountCreateAttributes("ci@example.com", true)
		attrs.SetName("CI")
		data := datadogV2.NewServiceAccountCreateData(*attrs, datadogV2.USERSTYPE_USERS)
		data.SetRelationships(datadogV2.UserRelationships{Roles: &datadogV2.RelationshipToRoles{
			Data: []datadogV2.RelationshipToRoleData{{Id: roles.Data[0].Id, Type: datadogV2.ROLESTYPE_ROLES.Ptr()}},
		}})
		sa, resp, err := accounts.CreateServiceAccount(ctx, *datadogV2.NewServiceAccountCreateRequest(*data))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("CreateServiceAccount: %v, %v", resp, err)
		}
		assertParsed(t, sa)
		saID := sa.Data.GetId()

		key, _, err := accounts.CreateServiceAccountApplicationKey(ctx, saID, datadogV2.ApplicationKeyCreateRequest{Data: datadogV2.ApplicationKeyCreateData{
			Type:       datadogV2.APPLICATIONKEYSTYPE_APPLICATION_KEYS,
			Attributes: datadogV2.ApplicationKeyCreateAttributes{Name: "ci-key"},
		}})
		if err != nil || key.Data.Attributes.GetKey() == "" {
			t.Fatalf("CreateServiceAccountApplicationKey = %+v, %v", key, err)
		}
		assertParsed(t, key)
		saKeys, _, err := accounts.ListServiceAccountApplicationKeys(ctx, saID)
		if err != nil || len(saKeys.Data) != 1 {
			t.Errorf("ListServiceAccountApplicationKeys = %+v, %v", saKeys, err)
		}
		assertParsed(t, saKeys)

		expires := time.Now().Add(time.Hour)
		satAttrs := datadogV2.NewServiceAccountAccessTokenCreateAttributes("ci-token", []string{"dashboards_read"})
		satAttrs.SetExpiresAt(expires)
		sat, _, err := accounts.CreateServiceAccountAccessToken(ctx, saID,
			*datadogV2.NewServiceAccountAccessTokenCreateRequest(*datadogV2.NewServiceAccountAccessTokenCreateData(*satAttrs, datadogV2.SERVICEACCESSTOKENSTYPE_SERVICE_ACCESS_TOKENS)))
		if err != nil || !sat.Data.Attributes.ExpiresAt.IsSet() || sat.Data.Attributes.GetExpiresAt().Sub(expires).Abs() > time.Millisecond {
			t.Fatalf("CreateServiceAccountAccessToken = %+v, %v", sat, err)
		}
		assertParsed(t, sat)
		fetched, _, err := accounts.GetServiceAccountAccessToken(ctx, saID, sat.Data.GetId())
		if err != nil {
			t.Fatal(err)
		}
		assertParsed(t, fetched)

		pat, _, err := keys.CreatePersonalAccessToken(ctx, *datadogV2.NewPersonalAccessTokenCreateRequest(*datadogV2.NewPersonalAccessTokenCreateData(
			*datadogV2.NewPersonalAccessTokenCreateAttributes(time.Now().Add(48*time.Hour), "pat", []string{"monitors_read"}),
			datadogV2.PERSONALACCESSTOKENSTYPE_PERSONAL_ACCESS_TOKENS)))
		if err != nil {
			t.Fatal(err)
		}
		assertParsed(t, pat)
		all, _, err := keys.ListPersonalAccessTokens(ctx)
		if err != nil || len(all.Data) != 2 {
			t.Errorf("ListPersonalAccessTokens = %+v, %v", all, err)
		}
		assertParsed(t, all)

		// Tokens authenticate alone, through client-go's access-token context.
		for token, want := range map[string][2]int{
			sat.Data.Attributes.GetKey(): {http.StatusOK, http.StatusForbidden},
			pat.Data.Attributes.GetKey(): {http.StatusForbidden, http.StatusOK},
		} {
			tokenCtx := context.WithValue(context.Background(), datadog.ContextAccessToken, token)
			_, resp, _ := datadogV1.NewDashboardsApi(client).ListDashboards(tokenCtx)
			_, resp2, _ := datadogV1.NewMonitorsApi(client).ListMonitors(tokenCtx)
			if resp == nil || resp2 == nil || resp.StatusCode != want[0] || resp2.StatusCode != want[1] {
				t.Errorf("token %s: dashboards %v, monitors %v; want %v", token[:6], resp, resp2, want)
			}
		}

		users := datadogV2.NewUsersApi(client)
		if resp, err := users.DisableUser(ctx, saID); err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DisableUser: %v, %v", resp, err)
		}
		got, _, err := users.GetUser(ctx, saID)
		if err != nil || !got.Data.Attributes.GetDisabled() || !got.Data.Attributes.GetServiceAccount() {
			t.Errorf("GetUser of the disabled account = %+v, %v", got.Data, err)
		}
		assertParsed(t, got)
		_, resp, err = datadogV1.NewDashboardsApi(client).ListDashboards(context.WithValue(context.Background(), datadog.ContextAccessToken, sat.Data.Attributes.GetKey()))
		wantStatus(t, resp, err, http.StatusForbidden, "Forbidden")
	})
}

// wantStatus checks that a call failed the way client-go reports a Datadog
// error: a GenericOpenAPIError value carrying the body, and the response.
func wantStatus(t *testing.T, resp *http.Response, err error, status int, message string) {
	t.Helper()
	var apiErr datadog.GenericOpenAPIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v (%T), want a datadog.GenericOpenAPIError", err, err)
	}
	if resp == nil || resp.StatusCode != status {
		t.Errorf("response %v, want status %d", resp, status)
	}
	if !strings.Contains(string(apiErr.Body()), message) {
		t.Errorf("error body %s, want it to contain %q", apiErr.Body(), message)
	}
}

// assertParsed fails if client-go could not decode any part of v into its
// model, which it reports by filling an UnparsedObject field.
func assertParsed(t *testing.T, v any) {
	t.Helper()
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i), path+"[]")
			}
		case reflect.Struct:
			for i := range v.NumField() {
				field := v.Type().Field(i)
				if field.Name == "UnparsedObject" && !v.Field(i).IsZero() {
					t.Errorf("%s.UnparsedObject is set: the client could not parse that part of the response", path)
				}
				walk(v.Field(i), path+"."+field.Name)
			}
		}
	}
	walk(reflect.ValueOf(v), reflect.TypeOf(v).Name())
}
