package backend

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestConfigWriteReadNeverShowsSecrets(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)

	resp := env.mustDo(t, logical.ReadOperation, "config", nil)
	want := map[string]interface{}{
		"site":          "datadoghq.com",
		"api_url":       env.url,
		"owner_id":      env.emu.UserID(),
		"api_key_last4": env.emu.APIKey()[len(env.emu.APIKey())-4:],
		"app_key_last4": env.emu.AppKey()[len(env.emu.AppKey())-4:],
	}
	for k, v := range want {
		if resp.Data[k] != v {
			t.Errorf("config %s = %v, want %v", k, resp.Data[k], v)
		}
	}
	for k, v := range resp.Data {
		s := fmt.Sprint(v)
		if strings.Contains(s, env.emu.APIKey()) || strings.Contains(s, env.emu.AppKey()) {
			t.Errorf("config read returns a secret in %s", k)
		}
	}
	if _, ok := resp.Data["api_key"]; ok {
		t.Error("config read has an api_key field")
	}
}

func TestConfigPartialUpdateKeepsKeys(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.UpdateOperation, "config", map[string]interface{}{"site": "datadoghq.eu"})

	cfg, err := getConfig(t.Context(), env.storage)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Site != "datadoghq.eu" || cfg.APIKey != env.emu.APIKey() || cfg.AppKey != env.emu.AppKey() {
		t.Errorf("after a site-only update: site=%q, keys kept=%v", cfg.Site, cfg.APIKey == env.emu.APIKey() && cfg.AppKey == env.emu.AppKey())
	}
}

func TestConfigDelete(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	env.mustDo(t, logical.DeleteOperation, "config", nil)
	resp := env.mustDo(t, logical.ReadOperation, "config", nil)
	if resp != nil {
		t.Errorf("config read after delete = %v, want nothing", resp.Data)
	}
}

func TestConfigBadInput(t *testing.T) {
	cases := []struct {
		name      string
		data      func(env *testEnv) map[string]interface{}
		fragments []string
		datadog   bool // whether the refusal needs Datadog's answer
	}{
		{"missing api_key", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"app_key": env.emu.AppKey(), "api_url": env.url}
		}, []string{"api_key is required"}, false},
		{"missing app_key", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "api_url": env.url}
		}, []string{"app_key is required"}, false},
		{"unknown site", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "site": "datadoghq.xyz"}
		}, []string{"site", "datadoghq.xyz", "datadoghq.eu"}, false},
		{"http to a remote host", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "api_url": "http://dd-proxy.example.com"}
		}, []string{"api_url", "https", "loopback"}, false},
		{"unsupported scheme", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "api_url": "ftp://127.0.0.1"}
		}, []string{"api_url", "https"}, false},
		{"api_url with a path", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "api_url": env.url + "/api"}
		}, []string{"api_url", "without path"}, false},
		{"relative api_url", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": env.emu.AppKey(), "api_url": "api.datadoghq.com"}
		}, []string{"api_url", "absolute URL"}, false},
		{"wrong api_key", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": strings.Repeat("0", 32), "app_key": env.emu.AppKey(), "api_url": env.url}
		}, []string{"api_key was rejected", "403"}, true},
		{"wrong app_key", func(env *testEnv) map[string]interface{} {
			return map[string]interface{}{"api_key": env.emu.APIKey(), "app_key": strings.Repeat("0", 40), "api_url": env.url}
		}, []string{"app_key was rejected", "403"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			resp, err := env.do(t, logical.CreateOperation, "config", tc.data(env))
			wantUserError(t, resp, err, tc.fragments...)
			if got := env.emu.Requests(); !tc.datadog && got != 0 {
				t.Errorf("refused input made %d Datadog calls, want none", got)
			}
			if cfg, _ := getConfig(t.Context(), env.storage); cfg != nil {
				t.Error("refused config was stored")
			}
			for _, secret := range []string{env.emu.APIKey(), env.emu.AppKey()} {
				if strings.Contains(resp.Error().Error(), secret) {
					t.Error("error message contains a key")
				}
			}
		})
	}
}

func TestConfigBadUpdateKeepsPreviousConfig(t *testing.T) {
	env := newTestEnv(t)
	env.configure(t)
	before := env.snapshot(t)
	resp, err := env.do(t, logical.UpdateOperation, "config", map[string]interface{}{"app_key": strings.Repeat("1", 40)})
	wantUserError(t, resp, err, "app_key was rejected")
	if !sameSnapshot(before, env.snapshot(t)) {
		t.Error("a refused config update changed storage")
	}
}

func TestParseAPIURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://api.datadoghq.com":         true,
		"https://dd-proxy.internal:8443":    true,
		"http://127.0.0.1:8126":             true,
		"http://127.3.4.5:1":                true,
		"http://[::1]:8080":                 true,
		"http://localhost:8080":             true,
		"http://10.0.0.1:8080":              false,
		"http://localhost.example.com":      false,
		"https://api.datadoghq.com/v2":      false,
		"https://user:pw@api.datadoghq.com": false,
		"https://api.datadoghq.com?x=1":     false,
		"":                                  false,
	} {
		_, _, err := parseAPIURL(raw)
		if (err == nil) != ok {
			t.Errorf("parseAPIURL(%q) error = %v, want ok=%v", raw, err, ok)
		}
	}
}
