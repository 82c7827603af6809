//go:build container

// Package container builds the Dockerfile's runtime stage from a static
// rwagent built on the host, on a dockerd the test starts for itself (vfs
// storage, no bridge, no iptables, nothing pulled), runs the image with
// its own ENTRYPOINT and CMD, and checks what the README promises: it runs
// as uid 65532, answers /-/ready, writes its WAL to the mounted volume and
// stops cleanly on SIGTERM. It needs root, dockerd and docker.
package container

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	dockerfile = "../../Dockerfile"
	// nonroot is the image's user, as in distroless.
	nonroot = 65532
	// webPort is the port of the image's CMD.
	webPort = 12345
)

// daemon is a dockerd of the test's own.
type daemon struct {
	dir    string // data-root, exec-root, socket, config
	host   string // DOCKER_HOST
	cgroup string // the containers' parent cgroup, removed at the end
}

// startDaemon starts dockerd on a socket in a new directory and stops it,
// and whatever it started, when the test ends.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the container test needs root to run dockerd")
	}
	for _, tool := range []string{"dockerd", "docker"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (.ci/run installs docker.io): %v", tool, err)
		}
	}
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "rwagent-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{dir: dir, host: "unix://" + filepath.Join(dir, "docker.sock"), cgroup: filepath.Base(dir)}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dockerd",
		"--host="+d.host,
		"--data-root="+filepath.Join(dir, "root"),
		"--exec-root="+filepath.Join(dir, "exec"),
		"--pidfile="+filepath.Join(dir, "dockerd.pid"),
		"--storage-driver=vfs",
		"--cgroup-parent=/"+d.cgroup,
		"--iptables=false", "--ip6tables=false", "--bridge=none",
		"--log-level=warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() { d.stop(t, cmd, exited) })

	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := d.docker(t, 10*time.Second, "version", "--format", "{{.Server.Version}}"); err == nil {
			return d
		}
		select {
		case <-exited:
			t.Fatalf("dockerd exited at start:\n%s", d.log())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd not answering within 90s:\n%s", d.log())
		}
	}
}

func (d *daemon) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
	return string(b)
}

// stop ends dockerd (SIGTERM, then SIGKILL after 30s), the containerd it
// manages, and any mount left under its directory, then removes it.
func (d *daemon) stop(t *testing.T, cmd *exec.Cmd, exited chan struct{}) {
	containerdPID := filepath.Join(d.dir, "exec", "containerd", "containerd.pid")
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Errorf("dockerd did not stop within 30s of SIGTERM; killing it")
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	if b, err := os.ReadFile(containerdPID); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
			t.Errorf("containerd (pid %d) outlived dockerd; killing it", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, m := range mountsUnder(d.dir) {
		t.Errorf("mount %s left behind by dockerd; unmounting it", m)
		unix.Unmount(m, unix.MNT_DETACH)
	}
	// The containers' parent cgroup in each hierarchy, empty by now.
	cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", d.cgroup))
	if own, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", d.cgroup)); len(own) > 0 {
		cgroups = append(cgroups, own...)
	}
	for _, cg := range cgroups {
		if err := syscall.Rmdir(cg); err != nil {
			t.Errorf("remove cgroup %s: %v", cg, err)
		}
	}
	if t.Failed() {
		t.Logf("dockerd's log:\n%s", d.log())
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("remove dockerd's directory: %v", err)
	}
}

// mountsUnder lists mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			ms = append(ms, fields[4])
		}
	}
	slices.SortFunc(ms, func(a, b string) int { return len(b) - len(a) })
	return ms
}

// docker runs the docker client against d, bounded by timeout, and returns
// its standard output.
func (d *daemon) docker(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(),
		"DOCKER_HOST="+d.host,
		"DOCKER_BUILDKIT=0", // the classic builder: no buildkit daemon, nothing pulled
		"DOCKER_CONFIG="+filepath.Join(d.dir, "client"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (d *daemon) must(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := d.docker(t, timeout, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// runtimeStage returns the Dockerfile's last stage, FROM scratch, with
// each COPY --from=build of /out/X turned into a COPY of out/X from the
// build context: the stage as shipped, fed by files made on the host.
func runtimeStage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.LastIndex(text, "\nFROM ")
	if i < 0 || !strings.HasPrefix(text[i+1:], "FROM scratch AS runtime\n") {
		t.Fatal("the Dockerfile's last stage is not `FROM scratch AS runtime`")
	}
	var out []string
	for line := range strings.Lines(text[i+1:]) {
		if strings.HasPrefix(line, "COPY ") && strings.Contains(line, "--from=") {
			if !strings.Contains(line, "--from=build ") || !strings.Contains(line, " /out/") {
				t.Fatalf("runtime stage line %q copies from elsewhere than the build stage's /out", line)
			}
			line = strings.Replace(strings.Replace(line, "--from=build ", "", 1), " /out/", " out/", 1)
		}
		out = append(out, line)
	}
	return strings.Join(out, "")
}

// buildContext makes the runtime stage's context: a static rwagent, the
// host's CA certificates, the empty WAL directory and packaging/container.
func buildContext(t *testing.T) string {
	t.Helper()
	ctxDir := t.TempDir()
	mkdir := func(p string) {
		if err := os.MkdirAll(filepath.Join(ctxDir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mkdir("out/wal")
	mkdir("packaging/container")
	build := exec.Command("go", "build", "-trimpath", "-tags", "grpcnotrace", "-ldflags", "-s -w -X main.version=container-test",
		"-o", filepath.Join(ctxDir, "out", "rwagent"), "github.com/rwagent/rwagent/cmd/rwagent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build a static rwagent: %v\n%s", err, out)
	}
	copyFile(t, "/etc/ssl/certs/ca-certificates.crt", filepath.Join(ctxDir, "out", "ca-certificates.crt"))
	for _, f := range []string{"passwd", "group"} {
		copyFile(t, filepath.Join("../../packaging/container", f), filepath.Join(ctxDir, "packaging/container", f))
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(runtimeStage(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	return ctxDir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// getInNetns sends GET path to 127.0.0.1:port inside the network
// namespace of process pid (the container has no shell and publishes
// nothing on the host) and returns the status code.
func getInNetns(pid int, port int, path string) (int, error) {
	type result struct {
		code int
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// This thread enters the container's namespace and is never
		// unlocked, so Go ends it with the goroutine.
		runtime.LockOSThread()
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter the network namespace of pid %d: %w", pid, err)}
			return
		}
		// The socket is made here, on this thread, so it lives in the
		// container's namespace.
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path); err != nil {
			ch <- result{err: err}
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			ch <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ch <- result{code: resp.StatusCode}
	}()
	r := <-ch
	return r.code, r.err
}

// procIDs reads the real, effective, saved and filesystem uids of pid.
func procUids(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return nil
}

func owner(t *testing.T, path string) int {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid)
}

func TestContainer(t *testing.T) {
	t0 := time.Now()
	d := startDaemon(t)
	t.Logf("dockerd up at %v", time.Since(t0))
	ctxDir := buildContext(t)
	const image = "rwagent:container-test"
	t.Logf("context built at %v", time.Since(t0))
	d.must(t, 10*time.Minute, "build", "--tag", image, ctxDir)
	t.Logf("image built at %v", time.Since(t0))

	// The image holds the binary, certificates, users and the WAL
	// directory, and nothing else: no shell, no ampemu.
	probe := d.must(t, time.Minute, "create", image)
	export := exec.Command("docker", "export", probe)
	export.Env = append(os.Environ(), "DOCKER_HOST="+d.host, "DOCKER_CONFIG="+filepath.Join(d.dir, "client"))
	tarOut, err := export.Output()
	if err != nil {
		t.Fatalf("docker export: %v", err)
	}
	files := tarList(t, tarOut)
	want := []string{"etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "usr/local/bin/rwagent", "var/lib/rwagent/"}
	for _, f := range want {
		if !slices.Contains(files, f) {
			t.Errorf("image lacks %s; it has %v", f, files)
		}
	}
	for _, f := range files {
		if strings.Contains(f, "ampemu") || strings.HasPrefix(f, "bin/") {
			t.Errorf("image ships %s", f)
		}
	}
	d.must(t, time.Minute, "rm", probe)

	// A new named volume takes the image's directory and its owner.
	d.must(t, time.Minute, "volume", "create", "rwagent-test-wal")
	probe = d.must(t, time.Minute, "create", "--volume", "rwagent-test-wal:/var/lib/rwagent", image)
	if uid := owner(t, filepath.Join(d.dir, "root", "volumes", "rwagent-test-wal", "_data")); uid != nonroot {
		t.Errorf("a new volume at /var/lib/rwagent is owned by %d, want %d", uid, nonroot)
	}
	d.must(t, time.Minute, "rm", probe)
	d.must(t, time.Minute, "volume", "rm", "rwagent-test-wal")

	// Run the image's own ENTRYPOINT and CMD, in a network namespace of
	// its own, with a config scraping the agent itself and a host
	// directory owned by 65532 as the WAL volume.
	host := t.TempDir()
	cfg := filepath.Join(host, "rwagent.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: self\n    static_configs: [{targets: ['127.0.0.1:%d']}]\n", webPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(host, "wal-volume")
	if err := os.Mkdir(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(walDir, nonroot, nonroot); err != nil {
		t.Fatal(err)
	}
	id := d.must(t, time.Minute, "run", "--detach", "--network", "none",
		"--volume", cfg+":/etc/rwagent/rwagent.yaml:ro",
		"--volume", walDir+":/var/lib/rwagent",
		image)
	// docker logs gives the agent's stderr on its stderr.
	logs := func() string {
		out, _ := exec.Command("docker", "--host", d.host, "logs", id).CombinedOutput()
		return string(out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("container log:\n%s", logs())
		}
		d.docker(t, time.Minute, "rm", "--force", id)
	})
	pid, err := strconv.Atoi(d.must(t, time.Minute, "inspect", "--format", "{{.State.Pid}}", id))
	if err != nil || pid <= 0 {
		t.Fatalf("container pid %d: %v", pid, err)
	}

	if uids := procUids(t, pid); !slices.Equal(uids, []string{"65532", "65532", "65532", "65532"}) {
		t.Errorf("rwagent runs as uids %v, want 65532 throughout", uids)
	}

	// Ready; the pprof profiles are off, the address not being loopback.
	waitFor(t, "/-/ready to answer 200", func() bool {
		code, _ := getInNetns(pid, webPort, "/-/ready")
		return code == http.StatusOK
	})
	if code, err := getInNetns(pid, webPort, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ on 0.0.0.0 without --web.enable-pprof: %d, %v; want 404", code, err)
	}

	// The WAL is in the volume, written by 65532, and grows with scrapes.
	seg := filepath.Join(walDir, "wal", "00000000")
	waitFor(t, "a WAL segment with data at "+seg, func() bool {
		st, err := os.Stat(seg)
		return err == nil && st.Size() > 0
	})
	if uid := owner(t, seg); uid != nonroot {
		t.Errorf("WAL segment owned by %d, want %d", uid, nonroot)
	}

	t.Logf("ready and WAL written at %v", time.Since(t0))
	// docker stop sends SIGTERM and waits 90s before SIGKILL (exit 137).
	d.must(t, 2*time.Minute, "stop", "--time", "90", id)
	if exit := d.must(t, time.Minute, "inspect", "--format", "{{.State.ExitCode}}", id); exit != "0" {
		t.Errorf("exit code %s after SIGTERM, want 0", exit)
	}
	if l := logs(); !strings.Contains(l, "rwagent stopped: scraping ended, queues flushed, WAL synced and closed") {
		t.Errorf("the log does not say the agent flushed and closed its WAL:\n%s", l)
	}
	d.must(t, time.Minute, "rm", id)
	d.must(t, time.Minute, "rmi", image)
}

// tarList lists the names in a tar stream, directories with a trailing /.
func tarList(t *testing.T, b []byte) []string {
	t.Helper()
	var files []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("read the exported image: %v", err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag == tar.TypeDir && !strings.HasSuffix(name, "/") {
			name += "/"
		}
		files = append(files, name)
	}
}

// waitDeadline bounds every waitFor in this package. The rule, the same in
// every package: long enough that a loaded 2-core CI machine never hits it
// while a test is merely slow, short enough that a hang fails inside the
// package's go test -timeout with the name of what it waited for. Here it
// is 60s, not 30s: the container starts inside a dockerd started by the
// test itself, and its first scrape and WAL write come after that.
const waitDeadline = 60 * time.Second

// waitFor polls cond every 10ms until it holds, and fails the test if it
// does not within waitDeadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitDeadline, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
