package emulator

import "fmt"

// API keys people made. A real organisation is not empty when the engine
// comes: its people made API keys for their Agents, which count against the
// organisation's API key cap and must outlive whatever the engine does.

const defaultPeopleAPIKeys = 3

// peopleAPIKeyEnvironments name the API keys people of the seeded
// organisation made, as an organisation has one Agent key per environment.
var peopleAPIKeyEnvironments = []string{"prod", "staging", "dev", "ci", "qa", "sandbox"}

// peopleAPIKeyName is the name of the i-th (from 0) key people made:
// "Datadog Agent – prod", …, then "Datadog Agent – prod 2", ….
func peopleAPIKeyName(i int) string {
	name := "Datadog Agent – " + peopleAPIKeyEnvironments[i%len(peopleAPIKeyEnvironments)]
	if round := i / len(peopleAPIKeyEnvironments); round > 0 {
		name += fmt.Sprintf(" %d", round+1)
	}
	return name
}

// peopleAPIKeys is how many API keys people made in a new organisation:
// Options.PeopleAPIKeys, its default when 0, none when negative.
func peopleAPIKeys(opts Options) int {
	switch {
	case opts.PeopleAPIKeys == 0:
		return defaultPeopleAPIKeys
	case opts.PeopleAPIKeys < 0:
		return 0
	}
	return opts.PeopleAPIKeys
}
