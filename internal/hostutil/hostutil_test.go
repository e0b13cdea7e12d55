package hostutil

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestFileSHA256(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	// sha256sum of "abc".
	if got, err := FileSHA256(path); err != nil || got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("FileSHA256 = %q, %v", got, err)
	}
}

func TestFreePortPairIsFree(t *testing.T) {
	port, err := FreePortPair()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{port, port + 1} {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		ln.Close()
	}
	if a, b := RandomHex(16), RandomHex(16); len(a) != 32 || a == b {
		t.Errorf("RandomHex(16) = %q, %q", a, b)
	}
}
