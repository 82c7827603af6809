// Command demo runs rwagent's main job locally with no AWS account: it
// starts ampemu (the AMP stand-in) with a demo access key, then rwagent
// with agent.example.yaml, whose remote write is signed with SigV4 from the
// AWS default credential chain (here: the environment), and prints what
// arrives in ampemu, queried with PromQL. `make demo` runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rwagent/rwagent/pkg/sigv4"
)

const (
	workspace = "ws-local"
	// Demo credentials: ampemu accepts exactly these, rwagent signs with
	// them. Not a real AWS key.
	accessKey = "AKIDRWAGENTDEMO00001"
	secretKey = "rwagent-demo-secret-key-not-a-real-one"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the rwagent and ampemu binaries")
	dir := flag.String("dir", ".demo", "directory for the demo's state and logs (emptied first)")
	cfg := flag.String("config", "agent.example.yaml", "rwagent configuration")
	dur := flag.Duration("duration", 30*time.Second, "how long to run; 0 runs until Ctrl-C")
	ampemuPort := flag.Int("ampemu-port", 9095, "port of ampemu (the AMP stand-in) on 127.0.0.1")
	webPort := flag.Int("web-port", 12345, "port of rwagent's web address (/metrics) on 127.0.0.1")
	flag.Parse()
	ports := demoPorts{ampemu: *ampemuPort, web: *webPort}
	if err := ports.check(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if err := run(*bin, *dir, *cfg, *dur, ports); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// demoPorts are the 127.0.0.1 ports the demo's two processes listen on.
type demoPorts struct{ ampemu, web int }

func (p demoPorts) ampemuAddr() string { return "127.0.0.1:" + strconv.Itoa(p.ampemu) }
func (p demoPorts) webAddr() string    { return "127.0.0.1:" + strconv.Itoa(p.web) }

// check fails at once, naming the port and its flag, when a port is
// taken or both are the same, instead of letting a process fail to
// start and the demo wait for it.
func (p demoPorts) check() error {
	if p.ampemu == p.web {
		return fmt.Errorf("-ampemu-port and -web-port are both %d; give them different ports", p.web)
	}
	for _, c := range []struct {
		flag, what string
		addr       string
	}{
		{"-ampemu-port", "ampemu", p.ampemuAddr()},
		{"-web-port", "rwagent's web address", p.webAddr()},
	} {
		ln, err := net.Listen("tcp", c.addr)
		if err != nil {
			return fmt.Errorf("%s for %s is not free (%w): pick another with make demo DEMO_FLAGS='%s=PORT'", c.addr, c.what, err, c.flag)
		}
		ln.Close()
	}
	return nil
}

// demoConfig writes the configuration at cfg into dir with the default
// targets' ports (rwagent's own 12345, ampemu's 9095) replaced by p's, and
// returns its path.
func demoConfig(cfg, dir string, p demoPorts) (string, error) {
	b, err := os.ReadFile(cfg)
	if err != nil {
		return "", err
	}
	text := strings.NewReplacer("127.0.0.1:12345", p.webAddr(), "127.0.0.1:9095", p.ampemuAddr()).Replace(string(b))
	out := filepath.Join(dir, "agent.yaml")
	return out, os.WriteFile(out, []byte(text), 0o644)
}

func run(bin, dir, cfg string, dur time.Duration, ports demoPorts) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dur)
		defer cancel()
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, err := demoConfig(cfg, dir, ports)
	if err != nil {
		return err
	}
	ampemuAddr := ports.ampemuAddr()
	env := append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+accessKey,
		"AWS_SECRET_ACCESS_KEY="+secretKey,
		// ampemu's key from the environment, not a flag that ps shows.
		"AMPEMU_SECRET_KEY="+secretKey,
		"AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE="+filepath.Join(dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "no-aws-credentials"),
		"RWAGENT_REMOTE_WRITE_URL=http://"+ampemuAddr+"/workspaces/"+workspace+"/api/v1/remote_write",
	)
	amp, err := start(filepath.Join(bin, "ampemu"), filepath.Join(dir, "ampemu.log"), env,
		"--web.listen-address="+ampemuAddr, "--workspace-id="+workspace,
		"--storage.path="+filepath.Join(dir, "ampemu"),
		"--access-key="+accessKey)
	if err != nil {
		return err
	}
	defer stopProc(amp, "ampemu")
	if err := waitHTTP(ctx, "http://"+ampemuAddr+"/metrics"); err != nil {
		return fmt.Errorf("ampemu did not come up (see %s/ampemu.log): %w", dir, err)
	}
	agent, err := start(filepath.Join(bin, "rwagent"), filepath.Join(dir, "rwagent.log"), env,
		"--config.file="+cfg, "--storage.path="+filepath.Join(dir, "agent"), "--web.listen-address="+ports.webAddr())
	if err != nil {
		return err
	}
	defer stopProc(agent, "rwagent")
	fmt.Printf("ampemu (AMP stand-in) on %s, workspace %s; rwagent on %s scraping itself and ampemu, signing with SigV4.\n", ampemuAddr, workspace, ports.webAddr())
	fmt.Printf("Logs: %s/rwagent.log, %s/ampemu.log. Like AMP, ampemu wants queries signed (e.g. awscurl --service aps).\n\n", dir, dir)

	// AMP's query API wants SigV4 too; ampemu checks it the same way.
	rt, err := sigv4.NewRoundTripper(ctx, sigv4.Config{Region: "us-east-1", AccessKey: accessKey, SecretKey: secretKey},
		http.DefaultTransport, sigv4.Options{})
	if err != nil {
		return err
	}
	client := &http.Client{Transport: rt, Timeout: 5 * time.Second}

	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	arrived := 0
	for {
		select {
		case <-ctx.Done():
			if arrived == 0 {
				return fmt.Errorf("nothing arrived in ampemu; see %s/rwagent.log", dir)
			}
			fmt.Printf("\nDone: %d series arrived, signed, in ampemu.\n", arrived)
			return nil
		case <-t.C:
		}
		n, err := report(client, ampemuAddr)
		if err != nil {
			fmt.Println("query ampemu:", err)
			continue
		}
		arrived = n
	}
}

// report prints series per job and up, and returns the series count.
func report(client *http.Client, ampemuAddr string) (int, error) {
	series, err := query(client, ampemuAddr, `count by (job) ({job!=""})`)
	if err != nil {
		return 0, err
	}
	up, err := query(client, ampemuAddr, `up`)
	if err != nil {
		return 0, err
	}
	total := 0
	fmt.Printf("%s  arrived:", time.Now().Format("15:04:05"))
	for _, s := range series {
		fmt.Printf("  job=%s %s series", s.Metric["job"], s.Value[1])
		var n int
		fmt.Sscan(fmt.Sprint(s.Value[1]), &n)
		total += n
	}
	for _, s := range up {
		fmt.Printf("  up{job=%s}=%s", s.Metric["job"], s.Value[1])
	}
	fmt.Println()
	return total, nil
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func query(client *http.Client, ampemuAddr, q string) ([]sample, error) {
	u := "http://" + ampemuAddr + "/workspaces/" + workspace + "/api/v1/query?query=" + url.QueryEscape(q)
	resp, err := client.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []sample `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	sort.Slice(r.Data.Result, func(i, j int) bool { return r.Data.Result[i].Metric["job"] < r.Data.Result[j].Metric["job"] })
	return r.Data.Result, nil
}

func start(path, logPath string, env []string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return cmd, nil
}

func stopProc(cmd *exec.Cmd, name string) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			fmt.Printf("%s exited: %v\n", name, err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		fmt.Printf("%s killed after 30s\n", name)
	}
}

func waitHTTP(ctx context.Context, u string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
