package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// templateExecution is the function whose presence in a binary makes the
// linker keep every exported method of every type reaching an interface:
// it looks methods up by a name known only at run time.
const templateExecution = "text/template.(*state).evalField"

// TestLinkedWithoutTemplateExecution builds rwagent as `make build` does
// and fails, naming the chain of calls, if a template execution is
// linked: in the default binary that would cost about 15 MB (README,
// "Service discovery"). It also checks that the Makefile and the
// Dockerfile still set the grpcnotrace tag that keeps gRPC's
// golang.org/x/net/trace out.
func TestLinkedWithoutTemplateExecution(t *testing.T) {
	for _, f := range []string{"../../Makefile", "../../Dockerfile"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(line, "go build") && strings.Contains(line, "./cmd/rwagent") && !strings.Contains(line, "-tags 'grpcnotrace,") && !strings.Contains(line, `-tags "grpcnotrace,`) {
				t.Errorf("%s builds rwagent without the grpcnotrace tag: %s", f, line)
			}
		}
	}
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "grpcnotrace", "-ldflags", "-s -w -dumpdep", "-o", filepath.Join(t.TempDir(), "rwagent"), ".")
	var deps bytes.Buffer
	cmd.Stderr = &deps
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v\n%.2000s", err, deps.String())
	}
	// -dumpdep prints each edge the linker followed, "from -> to".
	from := map[string]string{}
	sc := bufio.NewScanner(&deps)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		a, b, ok := strings.Cut(sc.Text(), " -> ")
		if !ok {
			continue
		}
		a, _, _ = strings.Cut(a, " <")
		b, _, _ = strings.Cut(b, " <")
		if _, seen := from[b]; !seen {
			from[b] = a
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if _, linked := from[templateExecution]; !linked {
		return
	}
	chain := []string{templateExecution}
	for s := from[templateExecution]; s != "" && s != "_" && len(chain) < 40; s = from[s] {
		chain = append(chain, s)
	}
	t.Errorf("a template execution is linked, so every exported method is kept:\n  %s", strings.Join(chain, "\n  <- "))
}
