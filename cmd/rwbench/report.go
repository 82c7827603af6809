package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// result is one agent's figures; it is printed as a table row and as one
// JSON line.
type result struct {
	Agent   string `json:"agent"`
	Version string `json:"version"`
	Proto   string `json:"protocol"`
	Error   string `json:"error,omitempty"`

	DurationS     float64 `json:"duration_s"`
	SamplesPerS   float64 `json:"samples_per_s"`     // target samples arrived per second
	CPUSeconds    float64 `json:"cpu_s"`             // agent user+system CPU in the window
	CPUPerMillion float64 `json:"cpu_s_per_million"` // CPU-seconds per million target samples scraped in the window and delivered
	PeakRSS       int64   `json:"peak_rss_bytes"`    // VmHWM at the end of the window
	RSS           int64   `json:"rss_bytes"`         // VmRSS at the end of the window
	ActiveSeries  int     `json:"active_series"`     // distinct target series of the window
	RSSPerSeries  float64 `json:"rss_bytes_per_series"`
	WirePerSample float64 `json:"wire_bytes_per_sample"` // request bodies / target samples, both counted on arrival in the window
	P50ms         float64 `json:"latency_p50_ms"`
	P99ms         float64 `json:"latency_p99_ms"`
	MaxMs         float64 `json:"latency_max_ms"`
	Served        int64   `json:"samples_served"`       // by the load generator in the window (receive: acknowledged, by timestamp)
	Delivered     int64   `json:"samples_delivered"`    // window's target samples that arrived
	Histograms    int64   `json:"histograms_delivered"` // native histogram samples among them
	DeliveryRatio float64 `json:"delivery_ratio"`
	Requests      int64   `json:"requests"`
	Duplicates    int64   `json:"duplicates"`
	OutOfOrder    int64   `json:"out_of_order"`
	Rejected      int64   `json:"rejected"`
	PushRetries   int64   `json:"push_retries,omitempty"` // receive workload: requests repeated (429, 5xx, no answer)
	PushFailed    int64   `json:"push_failed,omitempty"`  // receive workload: samples refused for good (a 4xx other than 429)
	// Receive workload: how long the window's acknowledged requests
	// waited for their answer.
	PushAnswerP50ms float64 `json:"push_answer_p50_ms,omitempty"`
	PushAnswerP99ms float64 `json:"push_answer_p99_ms,omitempty"`
	PushAnswerMaxMs float64 `json:"push_answer_max_ms,omitempty"`
	// RSSTimeline is the highest VmRSS, in bytes, of each -rss-step of
	// the window (read every second); the last step may be shorter.
	RSSTimeline    []int64 `json:"rss_timeline_bytes,omitempty"`
	HarnessCPU     float64 `json:"harness_cpu_s"` // load generator + sink + runner in the window
	HarnessPerMill float64 `json:"harness_cpu_s_per_million"`
}

func printTable(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "agent\tproto\tsamples/s\tCPU s/M\tpeak RSS MiB\tRSS B/series\twire B/sample\tp50 ms\tp99 ms\tdelivery\tdup\tooo\tharness CPU s/M\t")
	for _, r := range rs {
		if r.Error != "" {
			msg := r.Error
			if len(msg) > 60 {
				msg = msg[:60] + "…"
			}
			fmt.Fprintf(tw, "%s\t%s\terror: %s\t\t\t\t\t\t\t\t\t\t\t\n", r.Agent, r.Proto, msg)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.3f\t%.1f\t%.0f\t%.3f\t%.0f\t%.0f\t%.4f\t%d\t%d\t%.3f\t\n",
			r.Agent, r.Proto, r.SamplesPerS, r.CPUPerMillion, float64(r.PeakRSS)/(1<<20), r.RSSPerSeries,
			r.WirePerSample, r.P50ms, r.P99ms, r.DeliveryRatio, r.Duplicates, r.OutOfOrder, r.HarnessPerMill)
	}
	tw.Flush()
}

func printJSON(w io.Writer, rs []result) error {
	enc := json.NewEncoder(w)
	for _, r := range rs {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("encode result of %s: %w", r.Agent, err)
		}
	}
	return nil
}
