package remotewrite

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

// TestQueue_Status checks the endpoint table's numbers against what a
// real WAL and receiver saw: the samples sent, the send position at the
// WAL's end, no lag, the URL without its password, and the last error the
// queue logged (a 500 it retried).
func TestQueue_Status(t *testing.T) {
	const n = 50
	rc := newReceiver(t, func(i int, w http.ResponseWriter, _ *http.Request) bool {
		if i == 1 {
			http.Error(w, "storage hiccup", http.StatusInternalServerError)
			return true
		}
		return false
	})
	w, err := wal.Open(wal.Options{Dir: t.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var recs wal.Records
	ref := w.NewRef()
	recs.Series = append(recs.Series, record.RefSeries{Ref: ref, Labels: labels.FromStrings("__name__", "m")})
	base := nowMs() - n*1000
	for i := range n {
		recs.Samples = append(recs.Samples, record.RefSample{Ref: ref, T: base + int64(i)*1000, V: float64(i)})
	}
	if err := w.Log(&recs); err != nil {
		t.Fatal(err)
	}
	secretURL := strings.Replace(rc.srv.URL, "http://", "http://user:s3cr3t-pw@", 1)
	var errs ErrorLog
	q0, err := New(t.Context(), Options{Config: testConfig(t, rc.srv.URL, nil), Log: WALLog(w)})
	if err != nil {
		t.Fatal(err)
	}
	if s := q0.Status(); s.LagSeconds != -1 || !s.NewestSent.IsZero() {
		t.Errorf("before sending: lag %v, newest sent %v: want -1 and none", s.LagSeconds, s.NewestSent)
	}
	r := startQueue(t, Options{
		Config: testConfig(t, secretURL, func(c *config.RemoteWriteConfig) { c.QueueConfig.MaxShards = 3 }),
		Log:    WALLog(w),
		Logger: errs.Logger(slog.New(slog.DiscardHandler)),
	})
	waitFor(t, "every sample delivered", func() bool { return rc.store.count() == n })
	var s Status
	waitFor(t, "status caught up", func() bool {
		s = r.q.Status()
		return s.SamplesDelivered == n && s.LagBytes == 0
	})
	if s.SamplesSent != 2*n {
		t.Errorf("samples sent %v, want %d: two attempts of %d", s.SamplesSent, 2*n, n)
	}
	if strings.Contains(s.URL, "s3cr3t-pw") || !strings.Contains(s.URL, "xxxxx") {
		t.Errorf("URL %q: want the password redacted", s.URL)
	}
	if s.Name != "test" || s.Protocol != "1.0" || s.Shards != 1 || s.MinShards != 1 || s.MaxShards != 3 || s.Pending != 0 {
		t.Errorf("status %+v: want test, 1.0, 1 shard of 1..3, none pending", s)
	}
	if s.SendPosition != w.Started() && s.SendPosition.Compare(wal.Position{}) <= 0 {
		t.Errorf("send position %v: want past the samples", s.SendPosition)
	}
	if want := base + (n-1)*1000; s.NewestSent.UnixMilli() != want {
		t.Errorf("newest sent %v, want %d ms", s.NewestSent, want)
	}
	last := errs.Last()
	if last.Time.IsZero() || !strings.Contains(last.Err+last.Message, "500") || strings.Contains(fmt.Sprint(last), "s3cr3t-pw") {
		t.Errorf("last error %+v: want the 500, without the password", last)
	}
}
