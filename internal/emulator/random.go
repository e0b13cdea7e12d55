package emulator

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
)

const (
	lowerHex     = "0123456789abcdef"
	alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// newAPIKeySecret returns an API key in Datadog's format: 32 lowercase hex.
func newAPIKeySecret() string { return randomString(lowerHex, 32) }

// newAppKeySecret returns an application key in Datadog's current format:
// "ddapp_" and 34 alphanumerics, 40 characters in all.
func newAppKeySecret() string { return "ddapp_" + randomString(alphanumeric, 34) }

// newTokenSecret returns an access token in Datadog's format (65
// characters): the prefix ("ddpat" or "ddsat"), a 22-character public
// identifier and a 36-character secret, joined by underscores.
func newTokenSecret(prefix string) string {
	return prefix + "_" + randomString(alphanumeric, 22) + "_" + randomString(alphanumeric, 36)
}

// randomString draws n characters uniformly from alphabet (at most 256 long).
func randomString(alphabet string, n int) string {
	out := make([]byte, 0, n)
	// Rejection sampling keeps the draw uniform when 256 is not a multiple
	// of len(alphabet).
	limit := byte(256 - 256%len(alphabet))
	buf := make([]byte, 2*n)
	for len(out) < n {
		rand.Read(buf) // never fails (crypto/rand panics rather than return an error)
		for _, b := range buf {
			if len(out) == n {
				break
			}
			if limit == 0 || b < limit {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return formatUUID(u)
}

// nameUUID returns a UUID derived from name (version 5 style), so that ids
// of fixed objects such as permissions are the same in every emulator.
func nameUUID(name string) string {
	sum := sha1.Sum([]byte("datadog-emulator:" + name))
	var u [16]byte
	copy(u[:], sum[:16])
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return formatUUID(u)
}

func formatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}
