package gateway

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// What the OTLP decoders allocate is bounded by a first pass over the
// request that charges, before pdata unmarshals it, each message it holds
// (a data point of 2 bytes on the wire is some 140 bytes of pdata) and
// each bucket count of an exponential histogram (a byte on the wire, 8
// in pdata, more in the translator). The translation is
// then charged as the remote-write decoders are, on the same bound
// (maxDecodeCost).

// otlpMessage is an OTLP message type of the metrics protocol, as the
// cost pass knows it: which of its fields are messages, and which are
// packed varints. Fields not listed are scalars, strings, or packed
// fixed-size numbers, which take no more memory than wire bytes.
type otlpMessage struct {
	messages map[protowire.Number]*otlpMessage
	varints  map[protowire.Number]bool // packed varints
}

// What the cost pass charges: per message, pdata's struct of the largest
// (a histogram data point) and its pointer; per byte of an exponential
// histogram's bucket counts (at most one count a byte), pdata's uint64
// and what the translator allocates converting it, measured at some 95
// bytes. The OTel SDKs' exponential histograms have at most 160 buckets.
const (
	otlpCostMessage    = 160
	otlpCostBucketByte = 8 + 128
)

// otlpRequestType is ExportMetricsServiceRequest, with every message
// under it (opentelemetry-proto's metrics/v1, common/v1, resource/v1).
var otlpRequestType = func() *otlpMessage {
	msg := func() *otlpMessage { return &otlpMessage{messages: map[protowire.Number]*otlpMessage{}} }
	var (
		request, resourceMetrics, resource, scopeMetrics, scope, metric       = msg(), msg(), msg(), msg(), msg(), msg()
		gauge, sum, hist, expHist, summary                                    = msg(), msg(), msg(), msg(), msg()
		numberPoint, histPoint, expHistPoint, buckets, summaryPoint, quantile = msg(), msg(), msg(), msg(), msg(), msg()
		exemplar, keyValue, anyValue, arrayValue, keyValueList, entityRef     = msg(), msg(), msg(), msg(), msg(), msg()
	)
	request.messages[1] = resourceMetrics
	resourceMetrics.messages[1] = resource
	resourceMetrics.messages[2] = scopeMetrics
	resource.messages[1] = keyValue
	resource.messages[3] = entityRef
	scopeMetrics.messages[1] = scope
	scopeMetrics.messages[2] = metric
	scope.messages[3] = keyValue
	metric.messages[5] = gauge
	metric.messages[7] = sum
	metric.messages[9] = hist
	metric.messages[10] = expHist
	metric.messages[11] = summary
	metric.messages[12] = keyValue
	gauge.messages[1] = numberPoint
	sum.messages[1] = numberPoint
	hist.messages[1] = histPoint
	expHist.messages[1] = expHistPoint
	summary.messages[1] = summaryPoint
	numberPoint.messages[5] = exemplar
	numberPoint.messages[7] = keyValue
	histPoint.messages[8] = exemplar
	histPoint.messages[9] = keyValue
	expHistPoint.messages[1] = keyValue
	expHistPoint.messages[8] = buckets
	expHistPoint.messages[9] = buckets
	expHistPoint.messages[11] = exemplar
	buckets.varints = map[protowire.Number]bool{2: true}
	summaryPoint.messages[6] = quantile
	summaryPoint.messages[7] = keyValue
	exemplar.messages[7] = keyValue
	keyValue.messages[2] = anyValue
	anyValue.messages[5] = arrayValue
	anyValue.messages[6] = keyValueList
	arrayValue.messages[1] = anyValue
	keyValueList.messages[1] = keyValue
	// entity_refs' repeated strings: a string header each, charged as a
	// message.
	entityRef.messages[3] = msg()
	entityRef.messages[4] = msg()
	return request
}()

// otlpProtoCost is the memory pdata takes to unmarshal the
// ExportMetricsServiceRequest raw, as the cost pass estimates it; it
// stops counting past limit. A malformed request is left to pdata to
// refuse, with its own message: its cost is what was counted before.
func otlpProtoCost(raw []byte, limit int) int {
	cost := 0
	var walk func(b []byte, m *otlpMessage, depth int)
	walk = func(b []byte, m *otlpMessage, depth int) {
		for len(b) > 0 && cost <= limit {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				return
			}
			b = b[n:]
			if typ != protowire.BytesType {
				if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
					return
				}
				b = b[n:]
				continue
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return
			}
			b = b[n:]
			if child := m.messages[num]; child != nil {
				cost += otlpCostMessage
				if depth < 64 { // AnyValue nests; pdata refuses deeper, as protobuf does
					walk(v, child, depth+1)
				}
			} else if m.varints[num] {
				cost += otlpCostBucketByte * len(v)
			}
		}
	}
	walk(raw, otlpRequestType, 0)
	return cost
}

// otlpJSONCost is the memory pdata takes to unmarshal the OTLP JSON raw,
// and the translator to convert it, as estimated from the objects (each
// at most a message) and array elements (each at most a message, or a
// number the translator may turn into a bucket) outside strings.
func otlpJSONCost(raw []byte) int {
	n, inString, escaped := 0, false, false
	var arrays []bool // per open container: whether it is an array
	for _, c := range raw {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{':
			n += otlpCostMessage
			arrays = append(arrays, false)
		case c == '[':
			n += otlpCostBucketByte // its first element, if any
			arrays = append(arrays, true)
		case c == '}' || c == ']':
			if len(arrays) > 0 {
				arrays = arrays[:len(arrays)-1]
			}
		case c == ',' && len(arrays) > 0 && arrays[len(arrays)-1]:
			n += otlpCostBucketByte
		}
	}
	return n
}

// otlpTooLarge is the refusal of an OTLP request whose decoding would
// hold more than limit bytes.
func otlpTooLarge(limit int) *decodeError {
	return &decodeError{status: 413, reason: reasonDecodeTooLarge, msg: fmt.Sprintf(
		"the request holds too much to decode at once: its data points, attributes and series take over %d MiB, the gateway's limit per request: send fewer per request", limit>>20)}
}
