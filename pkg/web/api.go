package web

import (
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// The APIs answer in Prometheus' envelope: {"status":"success","data":…}
// or {"status":"error","errorType":…,"error":…}.
type response struct {
	Status    string `json:"status"`
	Data      any    `json:"data,omitempty"`
	ErrorType string `json:"errorType,omitempty"`
	Error     string `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, r response) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(r)
}

func ok(w http.ResponseWriter, data any) {
	writeJSON(w, http.StatusOK, response{Status: "success", Data: data})
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, response{Status: "error", ErrorType: "bad_data", Error: msg})
}

// labelMap is labels as a JSON object, as Prometheus writes them.
func labelMap(ls labels.Labels) map[string]string {
	m := make(map[string]string, ls.Len())
	ls.Range(func(l labels.Label) { m[l.Name] = l.Value })
	return m
}

type activeTarget struct {
	DiscoveredLabels   map[string]string `json:"discoveredLabels"`
	Labels             map[string]string `json:"labels"`
	ScrapePool         string            `json:"scrapePool"`
	ScrapeURL          string            `json:"scrapeUrl"`
	GlobalURL          string            `json:"globalUrl"`
	LastError          string            `json:"lastError"`
	LastScrape         time.Time         `json:"lastScrape"`
	LastScrapeDuration float64           `json:"lastScrapeDuration"`
	Health             string            `json:"health"`
	ScrapeInterval     string            `json:"scrapeInterval"`
	ScrapeTimeout      string            `json:"scrapeTimeout"`
	// rwagent's: the Grafana Agent instance (absent for a Prometheus
	// file) and the series of the last scrape.
	Instance string `json:"instanceName,omitempty"`
	Series   int    `json:"series"`
}

type droppedTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	ScrapePool       string            `json:"scrapePool"`
	Instance         string            `json:"instanceName,omitempty"`
	// Reason is rwagent's: "relabeling" or "shard".
	Reason string `json:"reason"`
}

type targetsData struct {
	ActiveTargets       []activeTarget  `json:"activeTargets"`
	DroppedTargets      []droppedTarget `json:"droppedTargets"`
	DroppedTargetCounts map[string]int  `json:"droppedTargetCounts"`
}

// apiTargets is /api/v1/targets with Prometheus' state= (active, dropped,
// any) and scrapePool= filters.
func (u *UI) apiTargets(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	switch state {
	case "", "any", "active", "dropped":
	default:
		badRequest(w, "state: "+strconv.Quote(state)+" is not one of active, dropped, any")
		return
	}
	pool := r.URL.Query().Get("scrapePool")
	v := u.snapshot()
	d := targetsData{ActiveTargets: []activeTarget{}, DroppedTargets: []droppedTarget{}, DroppedTargetCounts: map[string]int{}}
	for _, p := range v.Pipelines {
		for _, j := range p.Jobs {
			if pool != "" && j.Job != pool {
				continue
			}
			d.DroppedTargetCounts[j.Job] += j.DroppedTotal
			if state != "dropped" {
				for _, t := range j.Active {
					d.ActiveTargets = append(d.ActiveTargets, activeTarget{
						DiscoveredLabels: labelMap(t.DiscoveredLabels), Labels: labelMap(t.Labels),
						ScrapePool: j.Job, ScrapeURL: t.ScrapeURL, GlobalURL: t.ScrapeURL,
						LastError: t.LastError, LastScrape: t.LastScrape,
						LastScrapeDuration: t.LastScrapeDuration.Seconds(), Health: t.Health,
						ScrapeInterval: t.ScrapeInterval.String(), ScrapeTimeout: t.ScrapeTimeout.String(),
						Instance: p.Instance, Series: t.Series,
					})
				}
			}
			if state != "active" {
				for _, t := range j.Dropped {
					d.DroppedTargets = append(d.DroppedTargets, droppedTarget{
						DiscoveredLabels: labelMap(t.DiscoveredLabels), ScrapePool: j.Job, Instance: p.Instance, Reason: t.Reason,
					})
				}
			}
		}
	}
	ok(w, d)
}

type targetMetadata struct {
	Target map[string]string `json:"target"`
	Metric string            `json:"metric"`
	Type   string            `json:"type"`
	Help   string            `json:"help"`
	Unit   string            `json:"unit"`
}

// apiTargetMetadata is /api/v1/targets/metadata with Prometheus' metric=
// and limit=. match_target= needs a PromQL selector parser rwagent does
// not build in: it is refused by name rather than ignored.
func (u *UI) apiTargetMetadata(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("match_target") != "" {
		badRequest(w, "match_target is not supported by rwagent; filter the result instead")
		return
	}
	limit := -1
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			badRequest(w, "limit: "+strconv.Quote(s)+" is not an integer")
			return
		}
		limit = n
	}
	metric := q.Get("metric")
	out := []targetMetadata{}
	for _, p := range u.snapshot().Pipelines {
		for _, j := range p.Jobs {
			for _, t := range j.Active {
				for _, m := range t.Metadata {
					if limit >= 0 && len(out) >= limit {
						ok(w, out)
						return
					}
					if metric != "" && m.Family != metric {
						continue
					}
					out = append(out, targetMetadata{Target: labelMap(t.Labels), Metric: m.Family, Type: m.Type, Help: m.Help, Unit: m.Unit})
				}
			}
		}
	}
	ok(w, out)
}

func (u *UI) apiConfig(w http.ResponseWriter, _ *http.Request) {
	u.mu.Lock()
	cfg := u.config
	u.mu.Unlock()
	ok(w, map[string]string{"yaml": cfg})
}

func (u *UI) apiFlags(w http.ResponseWriter, _ *http.Request) {
	flags := u.opts.Flags
	if flags == nil {
		flags = map[string]string{}
	}
	ok(w, flags)
}

func (u *UI) apiBuildInfo(w http.ResponseWriter, _ *http.Request) {
	ok(w, u.opts.Build)
}

type runtimeInfo struct {
	StartTime           time.Time `json:"startTime"`
	CWD                 string    `json:"CWD"`
	Hostname            string    `json:"hostname"`
	ServerTime          time.Time `json:"serverTime"`
	ReloadConfigSuccess bool      `json:"reloadConfigSuccess"`
	LastConfigTime      time.Time `json:"lastConfigTime"`
	CorruptionCount     int64     `json:"corruptionCount"`
	GoroutineCount      int       `json:"goroutineCount"`
	GOMAXPROCS          int       `json:"GOMAXPROCS"`
	GOMEMLIMIT          int64     `json:"GOMEMLIMIT"`
	GOGC                string    `json:"GOGC"`
	GODEBUG             string    `json:"GODEBUG"`
	StorageRetention    string    `json:"storageRetention"`
}

// runtime is the process as runtimeinfo and the page show it.
func (u *UI) runtime() runtimeInfo {
	cwd, _ := os.Getwd()
	host, _ := os.Hostname()
	u.mu.Lock()
	gc, reloadOK, lastConfig := u.gogc, u.reloadOK, u.lastConfig
	u.mu.Unlock()
	gogc := ""
	if gc != 0 {
		gogc = strconv.Itoa(gc)
	}
	return runtimeInfo{
		StartTime: u.opts.Start, CWD: cwd, Hostname: host, ServerTime: u.opts.Now(),
		ReloadConfigSuccess: reloadOK, LastConfigTime: lastConfig,
		GoroutineCount: runtime.NumGoroutine(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		GOMEMLIMIT: debug.SetMemoryLimit(-1), GOGC: gogc, GODEBUG: os.Getenv("GODEBUG"),
		StorageRetention: "sent, then removed (see wal.max_size, wal.max_age)",
	}
}

func (u *UI) apiRuntimeInfo(w http.ResponseWriter, _ *http.Request) {
	ok(w, u.runtime())
}

// apiWALReplay is Prometheus' walreplay: the WAL is replayed before
// rwagent serves its first scrape, so it is done: min, max and current are
// the segments before this run's first. With several pipelines it covers
// them all.
func (u *UI) apiWALReplay(w http.ResponseWriter, _ *http.Request) {
	type replay struct {
		Min     int `json:"min"`
		Max     int `json:"max"`
		Current int `json:"current"`
	}
	out := replay{}
	for _, p := range u.snapshot().Pipelines {
		if p.HasWAL && p.WAL.FirstSegment >= 0 {
			out.Min = min(out.Min, p.WAL.FirstSegment)
			out.Max = max(out.Max, p.WAL.Started.Segment)
		}
	}
	out.Current = out.Max
	ok(w, out)
}

type remoteWriteEndpoint struct {
	Instance         string    `json:"instanceName,omitempty"`
	Name             string    `json:"name"`
	URL              string    `json:"url"`
	Protocol         string    `json:"protocol"`
	Shards           int       `json:"shards"`
	DesiredShards    int       `json:"desiredShards"`
	MinShards        int       `json:"minShards"`
	MaxShards        int       `json:"maxShards"`
	Pending          int       `json:"pending"`
	SamplesSent      float64   `json:"samplesSent"`
	SamplesDelivered float64   `json:"samplesDelivered"`
	SamplesFailed    float64   `json:"samplesFailed"`
	SamplesDropped   float64   `json:"samplesDropped"`
	SamplesPerSecond float64   `json:"samplesPerSecond"`
	RateWindow       float64   `json:"rateWindowSeconds"`
	ActiveSeries     int       `json:"activeSeries"`
	LastError        string    `json:"lastError"`
	LastErrorTime    time.Time `json:"lastErrorTime,omitzero"`
	LagSeconds       float64   `json:"lagSeconds"`
	LagBytes         int64     `json:"lagBytes"`
	SendPosition     string    `json:"sendPosition"`
	NewestSent       time.Time `json:"newestSentTimestamp,omitzero"`
	CostPerMonth     float64   `json:"estimatedCostPerMonthUSD"`
}

// apiRemoteWrite is rwagent's endpoint table. activeSeries is the
// pipeline's scraped series, before write_relabel_configs.
func (u *UI) apiRemoteWrite(w http.ResponseWriter, _ *http.Request) {
	v := u.snapshot()
	out := []remoteWriteEndpoint{}
	for _, p := range v.Pipelines {
		for _, e := range p.Endpoints {
			le := e.LastError.Message
			if e.LastError.Err != "" {
				le += ": " + e.LastError.Err
			}
			out = append(out, remoteWriteEndpoint{
				Instance: p.Instance, Name: e.Name, URL: e.URL, Protocol: e.Protocol,
				Shards: e.Shards, DesiredShards: e.DesiredShards, MinShards: e.MinShards, MaxShards: e.MaxShards,
				Pending: e.Pending, SamplesSent: e.SamplesSent, SamplesDelivered: e.SamplesDelivered,
				SamplesFailed: e.SamplesFailed, SamplesDropped: e.SamplesDropped,
				SamplesPerSecond: e.PerSecond, RateWindow: e.RateWindow.Seconds(), ActiveSeries: p.Series,
				LastError: le, LastErrorTime: e.LastError.Time,
				LagSeconds: e.LagSeconds, LagBytes: e.LagBytes, SendPosition: e.SendPosition.String(),
				NewestSent: e.NewestSent, CostPerMonth: e.CostMonth,
			})
		}
	}
	ok(w, map[string]any{"endpoints": out, "pricePer10MSamplesUSD": v.Price, "computedAt": v.At})
}
