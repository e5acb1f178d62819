package db

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Pool is pgcast's connection pool (NewPool), under a name the packages
// above db use without importing pgx.
type Pool = pgxpool.Pool

// Config configures the connection pool. The zero value (with URL set) means
// the defaults below.
type Config struct {
	// URL is the libpq-style connection string or postgres:// URL. Required.
	URL string
	// ApplicationName is reported to Postgres (pg_stat_activity) unless the
	// URL sets application_name itself. Default "pgcast".
	ApplicationName string
	// MaxConns bounds the pool. Default max(8, 4×GOMAXPROCS): enough for the
	// REST API and ticket redemption; the change reader does not use the pool.
	MaxConns int32
	// ConnectTimeout bounds establishing one connection. Default 5 s.
	ConnectTimeout time.Duration
	// MaxConnIdleTime closes connections idle this long. Default 5 min.
	MaxConnIdleTime time.Duration
	// IdleInTransactionTimeout is the connections'
	// idle_in_transaction_session_timeout (unless the URL sets it): a guard,
	// since pgcast's own transactions run their statements back to back. A
	// session idle in a transaction holds back vacuum and, if it listens,
	// the cluster's NOTIFY queue. Default 1 min; negative: none.
	IdleInTransactionTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.ApplicationName == "" {
		c.ApplicationName = "pgcast"
	}
	if c.MaxConns == 0 {
		c.MaxConns = int32(max(8, 4*runtime.GOMAXPROCS(0)))
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.MaxConnIdleTime == 0 {
		c.MaxConnIdleTime = 5 * time.Minute
	}
	if c.IdleInTransactionTimeout == 0 {
		c.IdleInTransactionTimeout = time.Minute
	}
	return c
}

func (c Config) validate() error {
	if c.URL == "" {
		return errors.New("database URL is empty: set DATABASE_URL or --database-url")
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("MaxConns must be positive, got %d", c.MaxConns)
	}
	return nil
}

// NewPool parses cfg, opens a pool and pings it once, so that a malformed URL
// or an unreachable server is reported here, in one line.
func NewPool(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pc, err := ParsePoolConfig(cfg)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// ParsePoolConfig turns cfg into a pgxpool configuration without connecting.
func ParsePoolConfig(cfg Config) (*pgxpool.Config, error) {
	cfg = cfg.withDefaults()
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgx redacts the password in its message.
		return nil, fmt.Errorf("invalid database URL: %w", err)
	}
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = cfg.ApplicationName
	}
	if _, ok := pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok && cfg.IdleInTransactionTimeout > 0 {
		pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(cfg.IdleInTransactionTimeout.Milliseconds(), 10)
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	}
	pc.MaxConns = cfg.MaxConns
	pc.MaxConnIdleTime = cfg.MaxConnIdleTime
	return pc, nil
}
