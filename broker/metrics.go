package broker

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// latencyBuckets are the upper bounds (seconds) of the latency histogram.
var latencyBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type requestKey struct {
	endpoint string
	code     int
}

type histogram struct {
	counts [len(latencyBuckets)]uint64 // non-cumulative
	sum    float64
	count  uint64
}

// metrics counts requests per endpoint and status and keeps a latency
// histogram per endpoint, written in the Prometheus text format (0.0.4).
type metrics struct {
	mu        sync.Mutex
	requests  map[requestKey]uint64
	latency   map[string]*histogram
	nonces    uint64 // nonces issued
	refusals  map[string]uint64
	startTime time.Time
}

func newMetrics(now time.Time) *metrics {
	return &metrics{
		requests:  map[requestKey]uint64{},
		latency:   map[string]*histogram{},
		refusals:  map[string]uint64{},
		startTime: now,
	}
}

func (m *metrics) observe(endpoint string, code int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[requestKey{endpoint, code}]++
	h := m.latency[endpoint]
	if h == nil {
		h = &histogram{}
		m.latency[endpoint] = h
	}
	s := d.Seconds()
	for i, le := range latencyBuckets {
		if s <= le {
			h.counts[i]++
			break
		}
	}
	h.sum += s
	h.count++
}

func (m *metrics) refused(code string) {
	m.mu.Lock()
	m.refusals[code]++
	m.mu.Unlock()
}

func (m *metrics) nonceIssued() {
	m.mu.Lock()
	m.nonces++
	m.mu.Unlock()
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// write writes every metric, sorted so that the output is stable.
func (m *metrics) write(w io.Writer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	b.WriteString("# HELP confidisk_broker_requests_total HTTP requests by endpoint (route pattern) and status code.\n")
	b.WriteString("# TYPE confidisk_broker_requests_total counter\n")
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b requestKey) int {
		if c := strings.Compare(a.endpoint, b.endpoint); c != 0 {
			return c
		}
		return a.code - b.code
	})
	for _, k := range keys {
		fmt.Fprintf(&b, "confidisk_broker_requests_total{endpoint=\"%s\",code=\"%d\"} %d\n", escapeLabel(k.endpoint), k.code, m.requests[k])
	}

	b.WriteString("# HELP confidisk_broker_request_duration_seconds Time to answer HTTP requests by endpoint.\n")
	b.WriteString("# TYPE confidisk_broker_request_duration_seconds histogram\n")
	endpoints := make([]string, 0, len(m.latency))
	for e := range m.latency {
		endpoints = append(endpoints, e)
	}
	slices.Sort(endpoints)
	for _, e := range endpoints {
		h, l := m.latency[e], escapeLabel(e)
		var cum uint64
		for i, le := range latencyBuckets {
			cum += h.counts[i]
			fmt.Fprintf(&b, "confidisk_broker_request_duration_seconds_bucket{endpoint=\"%s\",le=\"%s\"} %d\n", l, formatFloat(le), cum)
		}
		fmt.Fprintf(&b, "confidisk_broker_request_duration_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %d\n", l, h.count)
		fmt.Fprintf(&b, "confidisk_broker_request_duration_seconds_sum{endpoint=\"%s\"} %s\n", l, formatFloat(h.sum))
		fmt.Fprintf(&b, "confidisk_broker_request_duration_seconds_count{endpoint=\"%s\"} %d\n", l, h.count)
	}

	b.WriteString("# HELP confidisk_broker_refusals_total Requests refused, by reason code (see api.Error).\n")
	b.WriteString("# TYPE confidisk_broker_refusals_total counter\n")
	codes := make([]string, 0, len(m.refusals))
	for c := range m.refusals {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		fmt.Fprintf(&b, "confidisk_broker_refusals_total{code=\"%s\"} %d\n", escapeLabel(c), m.refusals[c])
	}

	b.WriteString("# HELP confidisk_broker_nonces_issued_total Nonces issued.\n")
	b.WriteString("# TYPE confidisk_broker_nonces_issued_total counter\n")
	fmt.Fprintf(&b, "confidisk_broker_nonces_issued_total %d\n", m.nonces)
	b.WriteString("# HELP confidisk_broker_start_time_seconds When the broker started (Unix time).\n")
	b.WriteString("# TYPE confidisk_broker_start_time_seconds gauge\n")
	fmt.Fprintf(&b, "confidisk_broker_start_time_seconds %d\n", m.startTime.Unix())
	_, err := io.WriteString(w, b.String())
	return err
}
