//go:build !slicelabels && !dedupelabels

package gateway

// labelsCopy says whether labels.ScratchBuilder.Labels copies the strings
// it was given: it does in Prometheus' default stringlabels build, so the
// decoder builds labels from the request's bytes without copying them
// first (labelString).
const labelsCopy = true
