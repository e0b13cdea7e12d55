package emulator

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"
	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV2"

	"github.com/vault-plugin-secrets-datadog/vault-plugin-secrets-datadog/internal/permissions"
)

// TestClientGoCompatibility drives the emulator with the official client,
// which parses responses strictly: an object whose fields do not match the
// spec (a timestamp without offset, say) lands in UnparsedObject.
func TestClientGoCompatibility(t *testing.T) {
	emu := New(Options{})
	srv := httptest.NewServer(emu)
	defer srv.Close()

	cfg := datadog.NewConfiguration()
	cfg.Host = strings.TrimPrefix(srv.URL, "http://") // Host and Scheme override the site's server URL
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
