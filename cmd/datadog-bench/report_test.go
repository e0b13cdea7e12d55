package main

import (
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	var sorted []time.Duration
	for i := 1; i <= 200; i++ {
		sorted = append(sorted, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 100 * time.Millisecond}, {99, 198 * time.Millisecond}, {100, 200 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(sorted, c.p); got != c.want {
			t.Errorf("p%v of 1..200 ms = %s, want %s", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != -1 {
		t.Errorf("p50 of nothing = %s, want -1", got)
	}
}

func TestRatiosDivideByTheSumOfTheFloors(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var out []time.Duration
		for _, v := range n {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	got := ratios(ms(6, 12), ms(2, 4), ms(1, 2))
	if got != [2]string{"2.00", "2.00"} {
		t.Errorf("ratios = %v, want 6/(2+1) and 12/(4+2)", got)
	}
	if got := ratios(ms(6), nil, ms(1)); got != [2]string{} {
		t.Errorf("ratios without a floor = %v, want blanks", got)
	}
}

func TestStorageGroupsAndPerLeaseDifference(t *testing.T) {
	for path, want := range map[string]string{
		"sys/expire/id/datadog/creds/expiry/abc":  "sys/expire/id/",
		"sys/expire/token/h1/h2":                  "sys/expire/token/",
		"logical/uuid-1/credentials/abcdefghijkl": "logical/uuid-1/credentials/",
		"logical/uuid-1/config":                   "logical/uuid-1/config",
	} {
		if got := storageGroup(path); got != want {
			t.Errorf("storageGroup(%q) = %q, want %q", path, got, want)
		}
	}
	before := &storageUse{entries: map[string]int{"logical/uuid-1/config": 1, "sys/expire/id/": 2},
		bytes: map[string]int64{"logical/uuid-1/config": 100, "sys/expire/id/": 20}}
	after := &storageUse{entries: map[string]int{"logical/uuid-1/config": 1, "sys/expire/id/": 5, "logical/uuid-1/credentials/": 3},
		bytes: map[string]int64{"logical/uuid-1/config": 100, "sys/expire/id/": 50, "logical/uuid-1/credentials/": 30}}
	diff := after.minus(before, "uuid-1")
	want := map[string]int{"sys/expire/id/": 3, "logical/<engine mount>/credentials/": 3}
	if len(diff.entries) != len(want) {
		t.Errorf("difference = %v, want %v", diff.entries, want)
	}
	for group, n := range want {
		if diff.entries[group] != n || diff.bytes[group] != 30 {
			t.Errorf("difference in %s = %d entries, %d bytes; want %d entries, 30 bytes", group, diff.entries[group], diff.bytes[group], n)
		}
	}
}
