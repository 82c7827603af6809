//go:build slicelabels || dedupelabels

package gateway

// labelsCopy says whether labels.ScratchBuilder.Labels copies the strings
// it was given: in the slicelabels and dedupelabels builds it keeps them,
// so the decoder copies a request's bytes before building labels of them
// (labelString).
const labelsCopy = false
