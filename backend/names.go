package backend

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync"

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

// Every name ends with "-", the mount's marker (16 hex digits: 64 bits,
// so that the mounts sharing a Datadog organisation never collide, where
// 32 bits made a collision likely from tens of thousands of mounts) and the
// request's record id (16 characters of lowercase base32). Names made
// before the marker grew carry its first 8 digits (legacyMarkerLength):
// they are still this mount's. The two forms cannot be mistaken for each
// other: the "-" before the marker sits at a different place from the end.
const (
	markerLength       = 16
	legacyMarkerLength = 8
	recordIDLength     = 16
)

var nameSuffix = regexp.MustCompile(`-([0-9a-f]{16}|[0-9a-f]{8})([a-z2-7]{16})$`)

// mountMarker derives a mount's marker from its UUID, which Vault keeps for
// the life of the mount.
func mountMarker(backendUUID string) string {
	sum := sha256.Sum256([]byte(backendUUID))
	return hex.EncodeToString(sum[:])[:markerLength]
}

// ownMarker reports whether a marker parsed from a name is this mount's,
// in its current or its legacy length.
func (b *datadogBackend) ownMarker(marker string) bool {
	return marker == b.marker || marker == b.marker[:legacyMarkerLength]
}

// ownRootName reports whether a name is one of this mount's root
// credentials, named with its current or legacy marker.
func (b *datadogBackend) ownRootName(name string) bool {
	return strings.HasPrefix(name, rootNamePrefix(b.marker)) || strings.HasPrefix(name, rootNamePrefix(b.marker[:legacyMarkerLength]))
}

// parseName returns the mount marker and record id at the end of a name
// the engine made, or ok false for any other name.
func parseName(name string) (marker, recordID string, ok bool) {
	m := nameSuffix.FindStringSubmatch(name)
	if m == nil || !strings.HasPrefix(name, namePrefix) {
		return "", "", false
	}
	return m[1], m[2], true
}

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
	t, err := parsedTemplate(tmpl)
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

// parsedTemplates keeps each name template parsed: parsing costs more than
// the rest of a creds request's own work, and templates are few.
var parsedTemplates sync.Map // template text -> template.StringTemplate

func parsedTemplate(tmpl string) (template.StringTemplate, error) {
	if t, ok := parsedTemplates.Load(tmpl); ok {
		return t.(template.StringTemplate), nil
	}
	t, err := template.NewTemplate(template.Template(tmpl))
	if err != nil {
		return t, err
	}
	parsedTemplates.Store(tmpl, t)
	return t, nil
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
