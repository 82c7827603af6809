package loadgen

import (
	"fmt"
	"strconv"
)

// kind is the Prometheus metric type of a family.
type kind int

const (
	kindCounter kind = iota
	kindGauge
	kindHistogram // classic: one _bucket series per bound, _sum and _count
)

func (k kind) String() string {
	switch k {
	case kindCounter:
		return "counter"
	case kindGauge:
		return "gauge"
	default:
		return "histogram"
	}
}

// bucketBounds are the classic histogram's upper bounds (client_golang's
// DefBuckets) without +Inf, which every histogram also has.
var bucketBounds = [...]string{".005", ".01", ".025", ".05", ".1", ".25", ".5", "1", "2.5", "5", "10"}

// histogramSeries is how many series one classic histogram exposes:
// every bound, +Inf, _sum and _count.
const histogramSeries = len(bucketBounds) + 3

// familySpec describes one metric family of the synthetic targets. labels
// returns the label pairs of the family's i-th instance; gen is the churn
// generation of that instance and ends up in its most volatile label.
type familySpec struct {
	name   string
	help   string
	kind   kind
	weight int // share of the target's series
	labels func(i, gen int) []string
}

// specs mixes node_exporter and kube-state-metrics shapes: a few series
// per device or CPU with short labels, many pod series with long labels
// (namespace, pod, uid, container, node), and request-latency histograms.
var specs = []familySpec{
	{"node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", kindCounter, 10, func(i, gen int) []string {
		modes := [...]string{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"}
		return []string{"cpu", strconv.Itoa(i / len(modes)), "mode", modes[i%len(modes)]}
	}},
	{"node_network_receive_bytes_total", "Network device statistic receive_bytes.", kindCounter, 5, func(i, gen int) []string {
		return []string{"device", fmt.Sprintf("veth%08x", i*2654435761&0xffffffff+gen)}
	}},
	{"node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", kindGauge, 5, func(i, gen int) []string {
		return []string{"device", fmt.Sprintf("/dev/nvme%dn1p%d", i/8, i%8), "fstype", "ext4",
			"mountpoint", fmt.Sprintf("/var/lib/kubelet/pods/%d/volumes/%d", gen, i)}
	}},
	{"kube_pod_container_status_restarts_total", "The number of container restarts per container.", kindCounter, 15, func(i, gen int) []string {
		return podLabels(i, gen, "container", fmt.Sprintf("app-%d", i%3))
	}},
	{"kube_pod_container_resource_requests", "The number of requested request resource by a container.", kindGauge, 20, func(i, gen int) []string {
		res := [...]string{"cpu", "memory"}
		unit := [...]string{"core", "byte"}
		return append(podLabels(i/2, gen, "container", fmt.Sprintf("app-%d", i%3)),
			"node", fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", i/250%250, i%250),
			"resource", res[i%2], "unit", unit[i%2])
	}},
	{"kube_pod_status_phase", "The pods current phase.", kindGauge, 15, func(i, gen int) []string {
		phases := [...]string{"Pending", "Running", "Succeeded", "Failed", "Unknown"}
		return append(podLabels(i/len(phases), gen), "phase", phases[i%len(phases)])
	}},
	{"http_server_request_duration_seconds", "Duration of HTTP server requests.", kindHistogram, 30, func(i, gen int) []string {
		methods := [...]string{"GET", "POST", "PUT", "DELETE"}
		codes := [...]string{"200", "201", "204", "400", "404", "500"}
		return []string{"handler", fmt.Sprintf("/api/v1/resource%d/{id}", i/24), "method", methods[i%4], "code", codes[i/4%6],
			"pod", fmt.Sprintf("web-%d-%05x", gen, i/24)}
	}},
}

// podLabels are kube-state-metrics' pod identity labels plus extra pairs.
func podLabels(i, gen int, extra ...string) []string {
	ns := fmt.Sprintf("team-%d", i%17)
	pod := fmt.Sprintf("svc-%d-7d9f8b6c4-%05x", i%41, i*7919+gen*104729)
	uid := fmt.Sprintf("%08x-1c2d-4e5f-8a9b-%012x", i*2654435761&0xffffffff, i+gen<<24)
	return append([]string{"namespace", ns, "pod", pod, "uid", uid}, extra...)
}
