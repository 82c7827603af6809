package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// profiles fetches an agent's CPU profile over the measured window, and
// its heap profile at the window's end, from Go's /debug/pprof handlers.
type profiles struct {
	base, prefix string // http://host:port; file name prefix
	cpu          chan error
}

// startProfiles starts the CPU profile of base's process for the window
// (a second less, so that it is back by the window's end); it is written
// to prefix.cpu.pprof.
func startProfiles(ctx context.Context, base string, window time.Duration, prefix string) *profiles {
	p := &profiles{base: base, prefix: prefix, cpu: make(chan error, 1)}
	secs := max(int(window/time.Second)-1, 1)
	go func() {
		p.cpu <- fetchProfile(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), prefix+".cpu.pprof", window+30*time.Second)
	}()
	return p
}

// finish saves the heap profile to prefix.heap.pprof and waits for the
// CPU profile; it returns what failed.
func (p *profiles) finish(ctx context.Context) []error {
	var errs []error
	if err := fetchProfile(ctx, p.base+"/debug/pprof/heap", p.prefix+".heap.pprof", 30*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := <-p.cpu; err != nil {
		errs = append(errs, err)
	}
	return errs
}

// fetchProfile GETs url into file, within timeout.
func fetchProfile(ctx context.Context, url, file string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("profile %s: %w", url, err)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("profile %s: %s: %s", url, resp.Status, msg)
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("save profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("save profile %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save profile %s: %w", file, err)
	}
	return nil
}
