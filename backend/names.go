package backend

import (
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/helper/template"
)

// namePrefix starts the Datadog name of everything the engine creates:
// clean-up by name and operators' searches in Datadog rely on it.
const namePrefix = "vault-"

// defaultNameTemplate names credentials so that Datadog's key list and Audit
// Trail show which role and Vault identity each belongs to.
const defaultNameTemplate = `vault-{{ .RoleName | truncate 30 }}-{{ .DisplayName | truncate 30 }}-{{ unix_time }}`

// maxNameLength keeps generated names well within what Datadog displays.
const maxNameLength = 100

// nameData is what a name template may use.
type nameData struct {
	RoleName    string
	DisplayName string
	EntityID    string
}

// credentialName renders a role's name template for one request and ends
// it with the request's unique id, after truncation, so that every name is
// unique whatever the template: clean-up by name must never find another
// lease's key. Values are sanitised first so that any identity's display
// name makes a clean name.
func credentialName(tmpl string, data nameData, unique string) (string, error) {
	t, err := template.NewTemplate(template.Template(tmpl))
	if err != nil {
		return "", err
	}
	name, err := t.Generate(nameData{
		RoleName:    sanitizeName(data.RoleName),
		DisplayName: sanitizeName(data.DisplayName),
		EntityID:    sanitizeName(data.EntityID),
	})
	if err != nil {
		return "", err
	}
	name = sanitizeName(name)
	if room := maxNameLength - len(unique) - 1; len(name) > room {
		name = name[:room]
	}
	return name + "-" + unique, nil
}

// checkNameTemplate refuses a template that does not parse, fails to render
// or renders names without the prefix operators and tidying rely on.
func checkNameTemplate(tmpl string) string {
	name, err := credentialName(tmpl, nameData{RoleName: "role", DisplayName: "token", EntityID: "00000000-0000-0000-0000-000000000000"}, "")
	switch {
	case err != nil:
		return fmt.Sprintf("name_template is not a valid template: %v", err)
	case !strings.HasPrefix(name, namePrefix):
		return fmt.Sprintf("name_template must render names starting with %q, such as vault-{{ .RoleName }}; it renders %q", namePrefix, strings.TrimSuffix(name, "-"))
	}
	return ""
}

// sanitizeName keeps names to characters that read well in Datadog's UI
// and in shell output.
func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '-'
	}, s)
}
