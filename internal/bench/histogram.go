package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// latencyHist records latencies from many goroutines without locks and
// without keeping every sample: with 10,000 clients a run delivers millions.
// Buckets are log-linear over microseconds, 64 per power of two, so a
// percentile is within 1/128 (0.8 %) of the true value; the maximum is
// exact. Writers are spread over shards to keep cache lines apart.
type latencyHist struct {
	shards [histShards]histShard
}

const (
	histShards  = 16
	histSubBits = 6         // 64 buckets per power of two
	histMaxUs   = 1<<40 - 1 // about 12 days: larger values are clamped
	histBuckets = (41-histSubBits)<<histSubBits + 1<<histSubBits
)

type histShard struct {
	counts [histBuckets]atomic.Int64
	maxUs  atomic.Int64
	_      [64]byte // keep the next shard's hot words off this cache line
}

// histIndex maps a value to its bucket: values below 128 have their own;
// above, the top 7 significant bits pick one of 64 buckets of the octave.
func histIndex(us int64) int {
	if us < 0 {
		us = 0
	}
	us = min(us, histMaxUs)
	s := max(0, bits.Len64(uint64(us))-(histSubBits+1))
	return s<<histSubBits + int(us>>s)
}

// histValue is the middle of bucket i's range.
func histValue(i int) float64 {
	if i < 2<<histSubBits {
		return float64(i)
	}
	s := i>>histSubBits - 1
	m := int64(i - s<<histSubBits)
	lo, hi := m<<s, (m+1)<<s
	return float64(lo+hi-1) / 2
}

// record adds one latency; shard spreads concurrent writers (any int).
func (h *latencyHist) record(shard int, d time.Duration) {
	us := d.Microseconds()
	sh := &h.shards[uint(shard)%histShards]
	sh.counts[histIndex(us)].Add(1)
	for {
		m := sh.maxUs.Load()
		if us <= m || sh.maxUs.CompareAndSwap(m, us) {
			return
		}
	}
}

// stats summarises the recorded latencies like latencyStats (nearest-rank
// percentiles), in milliseconds.
func (h *latencyHist) stats() (samples int64, p50, p99, maxMs float64) {
	var counts [histBuckets]int64
	var maxUs int64
	for i := range h.shards {
		sh := &h.shards[i]
		for j := range counts {
			counts[j] += sh.counts[j].Load()
		}
		maxUs = max(maxUs, sh.maxUs.Load())
	}
	for _, c := range counts {
		samples += c
	}
	if samples == 0 {
		return 0, 0, 0, 0
	}
	at := func(p float64) float64 {
		rank := max(int64(math.Ceil(float64(samples)*p)), 1)
		var cum int64
		for i, c := range counts {
			cum += c
			if cum >= rank {
				return min(histValue(i), float64(maxUs)) / 1000
			}
		}
		return float64(maxUs) / 1000
	}
	return samples, round3(at(0.50)), round3(at(0.99)), float64(maxUs) / 1000
}
