package backend

import (
	"github.com/hashicorp/vault/sdk/framework"
)

const secretTypeApplicationKey = "datadog_application_key"

// secretApplicationKey is the lease of a scoped application key owned by the
// configured identity, with the API key its role provides.
func secretApplicationKey(b *datadogBackend) *framework.Secret {
	return &framework.Secret{
		Type: secretTypeApplicationKey,
		Fields: map[string]*framework.FieldSchema{
			"application_key":    {Type: framework.TypeString, Description: "Datadog application key (DD_APP_KEY)."},
			"application_key_id": {Type: framework.TypeString, Description: "ID of the application key in Datadog."},
			"api_key":            {Type: framework.TypeString, Description: "Datadog API key (DD_API_KEY), unless the role's api_key_mode is none."},
			"api_key_id":         {Type: framework.TypeString, Description: "ID of the per-lease API key in Datadog (api_key_mode dynamic)."},
			"name":               {Type: framework.TypeString, Description: "Name of the keys in Datadog: vault-<role>-<display name>-<unix time>-<random>."},
			"scopes":             {Type: framework.TypeCommaStringSlice, Description: "Datadog permissions the application key is limited to."},
			"site":               {Type: framework.TypeString, Description: "Datadog site (DD_SITE)."},
			"api_url":            {Type: framework.TypeString, Description: "Base URL of the Datadog API the keys belong to."},
		},
		Renew:  b.renewCredential,
		Revoke: b.revokeCredential,
	}
}
