package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// freePort returns a 127.0.0.1 port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDemoPorts_check(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	free := freePort(t)
	for _, c := range []struct {
		name  string
		ports demoPorts
		want  string // "" for no error
	}{
		{"both free", demoPorts{ampemu: free, web: freePort(t)}, ""},
		{"ampemu's taken", demoPorts{ampemu: takenPort, web: free}, "127.0.0.1:" + strconv.Itoa(takenPort) + " for ampemu is not free"},
		{"web taken", demoPorts{ampemu: free, web: takenPort}, "DEMO_FLAGS='-web-port=PORT'"},
		{"same port", demoPorts{ampemu: free, web: free}, "-ampemu-port and -web-port are both"},
	} {
		err := c.ports.check()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestDemoConfig(t *testing.T) {
	dir := t.TempDir()
	path, err := demoConfig(filepath.Join("..", "..", "agent.example.yaml"), dir, demoPorts{ampemu: 19095, web: 22345})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"127.0.0.1:22345"`, `"127.0.0.1:19095"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("demo configuration lacks the target %s", want)
		}
	}
	for _, old := range []string{"127.0.0.1:12345", "127.0.0.1:9095"} {
		if strings.Contains(string(b), old) {
			t.Errorf("demo configuration still targets %s", old)
		}
	}
}
