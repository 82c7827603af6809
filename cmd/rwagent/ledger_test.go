package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rwagent/rwagent/pkg/awsemu"
	"github.com/rwagent/rwagent/pkg/receive"
	"github.com/rwagent/rwagent/pkg/sigv4"
)

// ledger is a receiver's SigV4 check that accepts exactly the credentials
// valid() returns at the moment of each request, and books every answer by
// access key id. It is safe for concurrent use.
type ledger struct {
	mu         sync.Mutex
	keys       []string             // access key ids in the order of their first accepted request
	firstOK    map[string]time.Time // access key id → first accepted request (receiver's clock)
	accepted   map[string]int
	rejected   map[string]int
	lateReject map[string]int // refusals of a key after a request signed with it was accepted
	afterFirst int            // refusals after the first accepted request of any key
	lastReject string
}

func newLedger() *ledger {
	return &ledger{firstOK: map[string]time.Time{}, accepted: map[string]int{},
		rejected: map[string]int{}, lateReject: map[string]int{}}
}

// verify returns a receive.Options.Verify for service aps in region, at
// the receiver's clock now.
func (l *ledger) verify(region string, now func() time.Time, valid func() []sigv4.Credential) func(*http.Request, []byte) error {
	return func(r *http.Request, body []byte) error {
		v := &sigv4.Verifier{Region: region, Service: "aps", Credentials: valid(), Now: now}
		err := v.Verify(r, body)
		l.book(accessKeyOf(r), err, now())
		if ve, ok := errors.AsType[*sigv4.VerifyError](err); ok {
			return receive.Reject(ve.Status, ve.Code, ve.Message)
		}
		return err
	}
}

func (l *ledger) book(key string, err error, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.rejected[key]++
		if _, ok := l.firstOK[key]; ok {
			l.lateReject[key]++
		}
		if len(l.keys) > 0 {
			l.afterFirst++
		}
		l.lastReject = err.Error()
		return
	}
	if _, ok := l.firstOK[key]; !ok {
		l.firstOK[key] = at
		l.keys = append(l.keys, key)
	}
	l.accepted[key]++
}

// snapshot returns copies of the ledger's books.
func (l *ledger) snapshot() (keys []string, firstOK map[string]time.Time, accepted, rejected map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cp := func(m map[string]int) map[string]int {
		out := make(map[string]int, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	firstOK = make(map[string]time.Time, len(l.firstOK))
	for k, v := range l.firstOK {
		firstOK[k] = v
	}
	return append([]string(nil), l.keys...), firstOK, cp(l.accepted), cp(l.rejected)
}

func (l *ledger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("keys=%d accepted=%v rejected=%v rejected after first success=%d last refusal=%q",
		len(l.keys), l.accepted, l.rejected, l.afterFirst, l.lastReject)
}

// accessKeyOf returns the access key id of a SigV4 Authorization header.
func accessKeyOf(r *http.Request) string {
	_, rest, _ := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	key, _, _ := strings.Cut(rest, "/")
	return key
}

// assertNoSecrets fails for every line of text (named where) that holds
// one of secrets or a marker of what an awsemu stand-in issued. The failure
// names the line number, never the secret.
func assertNoSecrets(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	secrets = append(secrets, awsemu.SecretMarker, awsemu.TokenMarker)
	for i, line := range strings.Split(text, "\n") {
		for j, s := range secrets {
			if len(s) >= 4 && strings.Contains(line, s) {
				t.Errorf("%s, line %d: holds secret #%d (%.4s…)", where, i+1, j, s)
			}
		}
	}
}
