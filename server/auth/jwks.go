package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// JWKSConfig bounds how key sets (and OIDC discovery documents) are fetched
// and cached. The zero value of every field means its default.
type JWKSConfig struct {
	// HTTPClient fetches. Default: a client bounded by FetchTimeout that
	// follows at most 3 redirects and never from https to http.
	HTTPClient *http.Client
	// FetchTimeout bounds one fetch, from connecting to the last byte.
	// Default 10 s.
	FetchTimeout time.Duration
	// MinRefreshInterval is the least time between two fetches of one URL
	// that a token can cause: a token whose key id no cached key has asks
	// for a refresh, and gets one at most this often per URL, however many
	// such tokens arrive (a flood of made-up key ids cannot make pgcast
	// hammer the provider). It is also the shortest cache age a response's
	// Cache-Control can ask for. Default 30 s.
	MinRefreshInterval time.Duration
	// MaxCacheAge is the longest a key set is used before it is fetched
	// again, whatever its Cache-Control says: how long a key the provider
	// withdrew may still verify tokens. Default 12 h.
	MaxCacheAge time.Duration
	// DefaultCacheAge is the cache age of a response without a max-age.
	// Default 1 h.
	DefaultCacheAge time.Duration
	// MaxBodyBytes bounds a response body. Default 1 MiB.
	MaxBodyBytes int64
	// MaxKeys bounds the keys of a set: a larger set is refused (and the
	// previous one kept). Default 100.
	MaxKeys int
	// RetryMin and RetryMax bound the backoff between failed fetches, which
	// doubles from RetryMin up to RetryMax (with jitter). Defaults 1 s and
	// 2 min.
	RetryMin time.Duration
	RetryMax time.Duration
}

func (c JWKSConfig) withDefaults() JWKSConfig {
	if c.FetchTimeout == 0 {
		c.FetchTimeout = 10 * time.Second
	}
	if c.MinRefreshInterval == 0 {
		c.MinRefreshInterval = 30 * time.Second
	}
	if c.MaxCacheAge == 0 {
		c.MaxCacheAge = 12 * time.Hour
	}
	if c.DefaultCacheAge == 0 {
		c.DefaultCacheAge = time.Hour
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = 100
	}
	if c.RetryMin == 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 2 * time.Minute
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.FetchTimeout, CheckRedirect: checkRedirect}
	}
	return c
}

func (c JWKSConfig) validate() error {
	switch {
	case c.FetchTimeout < 0, c.MinRefreshInterval < 0, c.MaxCacheAge < 0, c.DefaultCacheAge < 0, c.RetryMin < 0, c.RetryMax < 0:
		return errors.New("auth: JWKSConfig durations must not be negative")
	case c.MaxCacheAge < c.MinRefreshInterval:
		return fmt.Errorf("auth: JWKSConfig.MaxCacheAge %s is below MinRefreshInterval %s", c.MaxCacheAge, c.MinRefreshInterval)
	case c.RetryMax < c.RetryMin:
		return fmt.Errorf("auth: JWKSConfig.RetryMax %s is below RetryMin %s", c.RetryMax, c.RetryMin)
	case c.MaxBodyBytes < 0, c.MaxKeys < 0:
		return errors.New("auth: JWKSConfig.MaxBodyBytes and MaxKeys must not be negative")
	}
	return nil
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("stopped after 3 redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refused redirect from https to %s", req.URL.Scheme)
	}
	return nil
}

// checkFetchURL accepts absolute http(s) URLs, and says whether one is
// plain http to a host that is not loopback: keys fetched so can be
// replaced by anyone on the path, which the caller warns about.
func checkFetchURL(raw string) (insecure bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return false, err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return false, errors.New("want an absolute http(s) URL")
	}
	if u.Scheme == "http" {
		h := u.Hostname()
		ip := net.ParseIP(h)
		return h != "localhost" && (ip == nil || !ip.IsLoopback()), nil
	}
	return false, nil
}

// fetcher is what every source shares.
type fetcher struct {
	cfg JWKSConfig
	now func() time.Time
	log *slog.Logger
	m   *keyMetrics
}

// get fetches url with the configured bounds and returns the body of a 200.
func (f *fetcher) get(ctx context.Context, url string) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, nil, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > f.cfg.MaxBodyBytes {
		return nil, nil, fmt.Errorf("body larger than %d bytes", f.cfg.MaxBodyBytes)
	}
	return body, resp.Header, nil
}

// cacheAge is how long a response may be used: Cache-Control's max-age less
// the Age a cache in between has held it, no-cache and no-store meaning 0,
// clamped to [MinRefreshInterval, MaxCacheAge]; DefaultCacheAge without a
// max-age.
func (f *fetcher) cacheAge(h http.Header) time.Duration {
	age, found := time.Duration(0), false
	for _, d := range strings.Split(strings.Join(h.Values("Cache-Control"), ","), ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(name) {
		case "no-cache", "no-store":
			age, found = 0, true
		case "max-age":
			n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
			if err == nil && n >= 0 && !found {
				age, found = time.Duration(min(n, int64(1<<33)))*time.Second, true
			}
		}
	}
	if !found {
		age = f.cfg.DefaultCacheAge
	} else if held, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && held > 0 {
		age -= time.Duration(min(held, int64(1<<33))) * time.Second
	}
	return min(max(age, f.cfg.MinRefreshInterval), f.cfg.MaxCacheAge)
}

// keySet is one successful fetch of a JWKS URL.
type keySet struct {
	url       string
	keys      []*verifyKey
	fetchedAt time.Time
	expiresAt time.Time
}

// source is one configured JWKS URL, or one OIDC issuer whose jwks_uri is
// discovered. Its run goroutine does every fetch: on schedule (the key set's
// cache age, or backoff after a failure), and when a token asks
// (requestRefresh), so that requests are coalesced by construction.
type source struct {
	f      *fetcher
	url    string // the configured JWKS URL, "" for an OIDC source
	issuer string // the OIDC issuer, "" for a JWKS URL

	keys   atomic.Pointer[keySet]
	nextAt atomic.Int64 // Unix ns (by the injected clock) of the next scheduled fetch
	wake   chan struct{}

	mu           sync.Mutex
	running      bool
	pending      chan struct{} // closed when the next (or current) fetch ends
	lastAttempt  time.Time
	failures     int
	lastErr      error
	failingSince time.Time
	jwksURL      string // url, or the discovered jwks_uri
}

func newSource(f *fetcher, jwksURL, issuer string) *source {
	return &source{f: f, url: jwksURL, issuer: issuer, jwksURL: jwksURL, wake: make(chan struct{}, 1)}
}

// name is how readiness and logs call the source.
func (s *source) name() string {
	if s.issuer != "" {
		return "oidc " + s.issuer
	}
	return s.url
}

// labelLocked is the URL the next fetch goes to, for metrics.
func (s *source) labelLocked() string {
	if s.jwksURL != "" {
		return s.jwksURL
	}
	return discoveryURL(s.issuer)
}

// run fetches until ctx ends. It reports the outcome of its first attempt
// on first.
func (s *source) run(ctx context.Context, first chan<- error) {
	reported := false
	defer func() {
		s.mu.Lock()
		s.running = false
		if s.pending != nil {
			close(s.pending)
			s.pending = nil
		}
		s.mu.Unlock()
		if !reported {
			first <- ctx.Err()
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if reported {
			// Due by the injected clock, slept on the real one; a token
			// verified after the due time wakes the loop too (pokeIfDue).
			d := time.Duration(s.nextAt.Load() - s.f.now().UnixNano())
			timer.Reset(min(max(d, 0), s.f.cfg.MaxCacheAge))
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			case <-timer.C:
			}
		}
		s.mu.Lock()
		now := s.f.now()
		if reported && s.pending == nil && now.UnixNano() < s.nextAt.Load() {
			s.mu.Unlock()
			continue
		}
		done := s.pending
		if done == nil {
			done = make(chan struct{})
			s.pending = done
		}
		s.lastAttempt = now
		s.mu.Unlock()

		err := s.refresh(ctx)
		if ctx.Err() != nil {
			return // stopping: not the provider's failure
		}
		// A first attempt's permanent error is Start's to return, not to
		// log as well.
		var pe *permanentError
		s.record(err, reported || !errors.As(err, &pe))
		close(done)
		if !reported {
			reported = true
			first <- err
		}
	}
}

// refresh discovers the jwks_uri if not known yet, then fetches the key set.
func (s *source) refresh(ctx context.Context) error {
	s.mu.Lock()
	u := s.jwksURL
	s.mu.Unlock()
	if u == "" {
		var err error
		if u, err = discover(ctx, s.f, s.issuer); err != nil {
			return err
		}
		s.mu.Lock()
		s.jwksURL = u
		s.mu.Unlock()
		s.f.log.Info("oidc discovery done", "issuer", s.issuer, "jwks_uri", u)
	}
	set, skipped, err := s.fetch(ctx, u)
	if err != nil {
		if ctx.Err() == nil {
			s.f.m.refreshes.WithLabelValues(u, "error").Inc()
		}
		return fmt.Errorf("jwks: fetch %s: %w", u, err)
	}
	s.f.m.refreshes.WithLabelValues(u, "ok").Inc()
	s.f.m.keys.WithLabelValues(u).Set(float64(len(set.keys)))
	s.f.m.lastSuccess.WithLabelValues(u).Set(float64(set.fetchedAt.UnixNano()) / 1e9)
	old := s.keys.Swap(set)
	if old == nil || !sameKids(old.keys, set.keys) {
		s.f.log.Info("jwks key set loaded", "url", u, "keys", len(set.keys), "kids", kids(set.keys),
			"cache_age", set.expiresAt.Sub(set.fetchedAt).String(), "skipped", skipped)
	}
	return nil
}

func (s *source) fetch(ctx context.Context, u string) (*keySet, []string, error) {
	body, h, err := s.f.get(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	keys, skipped, err := parseJWKS(body, s.f.cfg.MaxKeys)
	if err != nil {
		return nil, skipped, err
	}
	now := s.f.now()
	return &keySet{url: u, keys: keys, fetchedAt: now, expiresAt: now.Add(s.f.cacheAge(h))}, skipped, nil
}

// record schedules the next fetch after one ended with err, and logs a
// failure when logIt.
func (s *source) record(err error, logIt bool) {
	now := s.f.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = nil
	if err == nil {
		s.failures, s.lastErr, s.failingSince = 0, nil, time.Time{}
		s.nextAt.Store(s.keys.Load().expiresAt.UnixNano())
		return
	}
	s.failures++
	if s.lastErr == nil {
		s.failingSince = now
	}
	s.lastErr = err
	// Backoff doubles from RetryMin to RetryMax, with equal jitter so that
	// nodes restarted together do not fetch in step.
	d := s.f.cfg.RetryMax
	if s.failures < 31 {
		d = min(s.f.cfg.RetryMin<<(s.failures-1), s.f.cfg.RetryMax)
	}
	if d > 1 {
		d = d/2 + rand.N(d/2)
	}
	s.nextAt.Store(now.Add(d).UnixNano())
	if !logIt {
		return
	}
	level := slog.LevelWarn
	if s.keys.Load() == nil {
		level = slog.LevelError // no key: every token of this provider is refused
	}
	s.f.log.Log(context.Background(), level, "jwks refresh failed", "source", s.name(), "err", err,
		"failures", s.failures, "retry_in", d.Round(time.Millisecond).String(), "cached_keys", s.cachedKeys())
}

func (s *source) cachedKeys() int {
	if set := s.keys.Load(); set != nil {
		return len(set.keys)
	}
	return 0
}

// requestRefresh asks for a fetch because a token names a key the cache
// lacks. It returns a channel closed when that fetch has ended: the one in
// flight or already asked for, else a new one unless the last began less
// than MinRefreshInterval ago; nil when none will be made.
func (s *source) requestRefresh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	if s.pending != nil {
		return s.pending
	}
	if now := s.f.now(); !s.lastAttempt.IsZero() && now.Sub(s.lastAttempt) < s.f.cfg.MinRefreshInterval {
		s.f.m.limited.WithLabelValues(s.labelLocked()).Inc()
		return nil
	}
	s.pending = make(chan struct{})
	s.poke()
	return s.pending
}

// pokeIfDue wakes the loop when the key set is due for its scheduled
// refresh: the loop sleeps on the real clock, and this keeps it on time by
// the injected one. It never waits.
func (s *source) pokeIfDue(now time.Time) {
	if now.UnixNano() >= s.nextAt.Load() {
		s.poke()
	}
}

func (s *source) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// status is the source's line in /readyz: ready when a key set is cached,
// detail "" when moreover the last fetch succeeded.
func (s *source) status() (ready bool, detail string) {
	s.mu.Lock()
	running, lastErr, since, attempted := s.running, s.lastErr, s.failingSince, !s.lastAttempt.IsZero()
	s.mu.Unlock()
	set := s.keys.Load()
	switch {
	case set == nil && lastErr != nil:
		return false, fmt.Sprintf("%s: no keys: %v", s.name(), lastErr)
	case set == nil && (!running || !attempted):
		return false, s.name() + ": not started"
	case set == nil:
		return false, s.name() + ": no keys yet"
	case lastErr != nil:
		return true, fmt.Sprintf("%s: refresh failing since %s (%v); serving %d keys fetched %s",
			s.name(), since.UTC().Format(time.RFC3339), lastErr, len(set.keys), set.fetchedAt.UTC().Format(time.RFC3339))
	}
	return true, ""
}

func kids(keys []*verifyKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.kid
	}
	return out
}

func sameKids(a, b []*verifyKey) bool {
	ka, kb := kids(a), kids(b)
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}
