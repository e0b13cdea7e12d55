// Package hostutil holds what the project's programs that build, register
// and start Vault and its plugin on this host share: a file's SHA-256 as
// Vault takes it, free loopback ports, and random tokens.
package hostutil

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// FileSHA256 is the SHA-256 of a file in hex, as sha256sum prints it and
// `vault plugin register -sha256` takes it.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FreePortPair finds a loopback port that is free together with the next
// one: a Vault server's cluster listener takes port+1.
func FreePortPair() (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		next, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		ln.Close()
		if err == nil {
			next.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free pair of loopback ports")
}

// RandomHex returns n random bytes in hex, for root tokens and names.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
