package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pgcast/pgcast/server"
	"github.com/pgcast/pgcast/server/catalyst"
	"github.com/pgcast/pgcast/server/ws"
	pgsql "github.com/pgcast/pgcast/sql"
	"github.com/pgcast/pgcast/stream"
)

// serveOptions are the settings of `pgcast serve` (and `pgcast dev`, which
// serves too).
type serveOptions struct {
	listenDatabaseURL string
	addr              string
	internalAddr      string
	shutdownTimeout   time.Duration
	migrate           bool
	schemaWait        time.Duration
	pollInterval      time.Duration
	pollOnly          bool
	doorbellMaxRate   int
	readerTimeout     time.Duration
	retention         time.Duration
	auth              authOptions
	idp               identityOptions
	messageLimit      int
	messageTime       time.Duration
	maxBuffer         int
	maxBufferBytes    int
	allowedOrigins    []string
	pingInterval      time.Duration
	pongWait          time.Duration
	messageRate       float64
	messageBurst      int
	maxConnsPerUser   int
	maxConnsPerIP     int
	trustedProxies    []string
	ticketTTL         time.Duration
	httpIdleTimeout   time.Duration
	httpReadTimeout   time.Duration
	httpWriteTimeout  time.Duration
	maxRequestsPerIP  int
	maxListBytes      int
	shutdownGrace     time.Duration
	// seed, when set, runs after the schema check and before serving
	// (`pgcast dev` seeds a demo collection and a watched table).
	seed func(context.Context, *pgxpool.Pool) error
	// console serves /console/ (--console); devTokens lets the console mint
	// development tokens (`pgcast dev` only).
	console   bool
	devTokens bool
}

func (o *serveOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.addr, "addr", ":8080", "public HTTP/WebSocket listen address")
	fs.StringVar(&o.internalAddr, "internal-addr", "127.0.0.1:9090", `internal listen address for /metrics ("off" disables it); never the public port`)
	fs.StringVar(&o.listenDatabaseURL, "listen-database-url", "", "connection URL for the LISTEN/reader connection (default: --database-url); point it past poolers such as PgBouncer in transaction mode, which break LISTEN")
	markSecret(fs, "listen-database-url", secretURL)
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take before connections are cut")
	fs.BoolVar(&o.migrate, "migrate", false, "apply pending migrations before serving")
	fs.DurationVar(&o.schemaWait, "schema-wait", 60*time.Second, "without --migrate, how long to wait for another node to migrate a schema that is behind this binary before giving up (0: fail at once); a schema ahead fails at once")
	fs.DurationVar(&o.pollInterval, "poll-interval", time.Second, "how often the reader reads the event log without a doorbell (a lost NOTIFY costs at most this much latency)")
	fs.BoolVar(&o.pollOnly, "poll-only", false, "never use LISTEN/NOTIFY: writers never ring, the reader polls every --poll-interval")
	fs.DurationVar(&o.readerTimeout, "reader-query-timeout", 5*time.Second, "bound on each statement of the log reader; a connection silent this long is replaced (after a timeout the next connection's statements get twice as long, up to 16 times this or a minute, and each completed read halves it back)")
	fs.IntVar(&o.doorbellMaxRate, "doorbell-max-rate", 1500, "commits/s above which the reader stops waiting for the doorbell and reads every millisecond instead, so writers stop ringing (a NOTIFY serialises commits); below two thirds of it every commit wakes the reader; negative: never wait while the log is busy")
	fs.DurationVar(&o.retention, "retention", 24*time.Hour, "how long event-log entries are kept (pruned by one node at a time)")
	o.auth.addFlags(fs)
	o.idp.addFlags(fs)
	fs.IntVar(&o.messageLimit, "message-limit", 1000, "Catalyst endpoints: most items per frame; a full frame is sent at once")
	fs.DurationVar(&o.messageTime, "message-time", 5*time.Second, "Catalyst endpoints: batching period, measured from each connection's start")
	fs.IntVar(&o.maxBuffer, "max-buffer", 100_000, "most items buffered per connection; a client that falls further behind is closed with 4008; at least --message-limit + 2000 (two reader pages), so that one statement cannot close a client that reads")
	fs.IntVar(&o.maxBufferBytes, "max-buffer-bytes", 0, "most bytes buffered per connection (the frames are shared by every connection they go to, so this bounds what one slow client pins); a client further behind is closed with 4008; at least 1 MiB; 0: --max-buffer × 4 KiB")
	fs.StringSliceVar(&o.allowedOrigins, "allowed-origins", nil, `Origins (scheme://host[:port]) allowed to open WebSockets and, from a browser, to call the REST API and /api/users/ws-auth/ (CORS), comma-separated; default same-origin only; requests without Origin are always allowed`)
	fs.DurationVar(&o.pingInterval, "ping-interval", 30*time.Second, "WebSocket keep-alive ping period")
	fs.DurationVar(&o.pongWait, "pong-wait", 60*time.Second, "close a WebSocket that has not answered a ping (with a pong) for this long")
	fs.Float64Var(&o.messageRate, "client-message-rate", 20, "frames of any kind (data, continuation, ping, pong, close) a WebSocket client may send per second, sustained; over it frames are refused, and a client that keeps on is closed with 1008; negative: no limit")
	fs.IntVar(&o.messageBurst, "client-message-burst", 100, "frames a WebSocket client may send at once before --client-message-rate applies")
	fs.IntVar(&o.maxConnsPerUser, "max-conns-per-user", 100, "WebSocket connections one user may hold on this node (both protocols); more are refused with 429; negative: no cap")
	fs.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", 0, "WebSocket connections one client IP address may hold on this node; more are refused with 429; 0: no cap (behind a proxy, set --trusted-proxies, else every client has the proxy's address)")
	fs.StringSliceVar(&o.trustedProxies, "trusted-proxies", nil, "addresses or CIDRs of the proxies in front of pgcast, comma-separated: for their requests the client address (for --max-conns-per-ip) is taken from X-Forwarded-For")
	fs.BoolVar(&o.console, "console", true, "serve the live console at /console/ (static pages on the public APIs: sign in with a token, watch channels, a live grid, Catalyst frames)")
	fs.DurationVar(&o.ticketTTL, "ticket-ttl", 60*time.Second, "lifetime of a /api/users/ws-auth/ ticket")
	fs.DurationVar(&o.httpIdleTimeout, "http-idle-timeout", server.DefaultHTTPIdleTimeout, "close a keep-alive HTTP connection idle this long; behind a load balancer keep it above the balancer's idle timeout (60s on AWS ALB and nginx)")
	fs.DurationVar(&o.httpReadTimeout, "http-read-timeout", server.DefaultHTTPReadTimeout, "most time to read an HTTP request, body included (a body not received by then is answered 408); WebSockets are not affected")
	fs.DurationVar(&o.httpWriteTimeout, "http-write-timeout", server.DefaultHTTPWriteTimeout, "most time from an HTTP request's headers to the end of its response (a client that does not read it is cut); WebSockets are not affected")
	fs.IntVar(&o.maxRequestsPerIP, "max-requests-per-ip", server.DefaultMaxRequestsPerIP, "HTTP requests one client address may have in flight (WebSockets excepted; the address as for --max-conns-per-ip); more are refused with 429; 0: no cap")
	fs.IntVar(&o.maxListBytes, "max-list-bytes", server.DefaultMaxListBytes, `byte budget of a GET /api/{collection} page: the page stops before the record that would exceed it and says "truncated": true (its first record is always served); 0: no budget`)
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 5*time.Second, "on SIGINT/SIGTERM, how long /readyz answers 503 before the first WebSocket is closed and new connections are refused, so load balancers take the node out first; taken within --shutdown-timeout, at most half of it; 0: none")
}

func (a *app) serveCmd() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the pgcast server",
		Long: `Run the pgcast HTTP/WebSocket server against an existing database.

/livez answers while the process runs; /readyz answers 200 when the database is
reachable, its schema is at this binary's version and, with --jwks-url or
--oidc-issuer, every key set has been loaded once (a later failing refresh is
reported in its details without failing it: the cached keys still verify). /metrics is served on
--internal-addr only. On SIGINT/SIGTERM readiness turns 503 and the server
drains for up to --shutdown-timeout; a second signal exits at once.

serve refuses to start on a schema ahead of the binary. On a schema behind
it, it waits up to --schema-wait for another node to migrate, then gives up;
--migrate applies pending migrations first (several nodes may start with
--migrate at once: they take turns on a lock).`,
		Example: "  DATABASE_URL=postgres://localhost/app pgcast serve --migrate\n  pgcast serve --database-url postgres://localhost/app --addr :8080 --log-format json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := ws.ParseTrustedProxies(o.trustedProxies); err != nil {
				return fmt.Errorf("--trusted-proxies: %w", err)
			}
			if err := o.checkBuffer(); err != nil {
				return err
			}
			url, err := a.requireDatabaseURL()
			if err != nil {
				return err
			}
			return a.serve(cmd.Context(), url, o)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

// minBufferBytes is the least --max-buffer-bytes: below it a statement of
// ordinary events would close clients that read.
const minBufferBytes = 1 << 20

// checkBuffer refuses a --max-buffer that one statement's events would
// overflow for clients that read (see catalyst.MinBuffer).
func (o *serveOptions) checkBuffer() error {
	if least := catalyst.MinBuffer(o.messageLimit); o.maxBuffer < least {
		return fmt.Errorf("--max-buffer %d is below %d (--message-limit %d + two reader pages of 1000 events): one statement would close clients that read with 4008", o.maxBuffer, least, o.messageLimit)
	}
	if o.maxBufferBytes != 0 && o.maxBufferBytes < minBufferBytes {
		return fmt.Errorf("--max-buffer-bytes %d is below %d (1 MiB); 0 means --max-buffer × 4 KiB", o.maxBufferBytes, minBufferBytes)
	}
	return nil
}

// serve runs the server until the first signal, then shuts down in order.
func (a *app) serve(ctx context.Context, url string, o *serveOptions) error {
	if o.listenDatabaseURL == "" {
		o.listenDatabaseURL = url
	}
	reg := server.NewRegistry()
	auth, err := o.auth.serverAuthenticator(&o.idp, reg, a.logger)
	if err != nil {
		return err
	}
	trusted, err := ws.ParseTrustedProxies(o.trustedProxies)
	if err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	if err := o.checkBuffer(); err != nil {
		return err
	}
	// Key sets first: an OIDC issuer that names another issuer fails here,
	// before the database is touched; a provider that is down does not
	// (it is retried, and /readyz says so).
	if err := auth.Start(ctx); err != nil {
		return err
	}
	defer stopWithin(ctx, o.shutdownTimeout, auth.Stop)
	pool, st, err := a.migrateOrWait(ctx, url, o)
	if err != nil {
		return err
	}
	defer pool.Close()
	if o.seed != nil {
		if err := o.seed(ctx, pool); err != nil {
			return err
		}
	}
	hub, err := stream.NewHub(stream.HubConfig{Registerer: reg})
	if err != nil {
		return err
	}
	reader, err := stream.NewReader(stream.ReaderConfig{
		URL:             o.listenDatabaseURL,
		Handler:         hub.Publish,
		PollInterval:    o.pollInterval,
		PollOnly:        o.pollOnly,
		DoorbellMaxRate: o.doorbellMaxRate,
		QueryTimeout:    o.readerTimeout,
		Logger:          a.logger.With("component", "reader"),
		Registerer:      reg,
	})
	if err != nil {
		return err
	}
	startCtx, cancelStart := context.WithTimeout(ctx, 30*time.Second)
	err = reader.Start(startCtx)
	cancelStart()
	if err != nil {
		return fmt.Errorf("start reader: %w", err)
	}
	defer stopWithin(ctx, o.shutdownTimeout, reader.Stop)
	pruner, err := stream.NewPruner(stream.PrunerConfig{Pool: pool, Retention: o.retention, Logger: a.logger.With("component", "pruner")})
	if err != nil {
		return err
	}
	if err := pruner.Start(ctx); err != nil {
		return err
	}
	defer stopWithin(ctx, o.shutdownTimeout, pruner.Stop)
	srv, err := server.New(server.Config{
		Addr:         o.addr,
		InternalAddr: o.internalAddr,
		Pool:         pool,
		Logger:       a.logger,
		Registry:     reg,
		ReadyChecks:  []server.ReadyCheck{{Name: "reader", Check: func(context.Context) error { return reader.Ready() }}},
		Hub:          hub,
		Auth:         auth,
		TicketTTL:    o.ticketTTL,
		WS: ws.Config{
			AllowedOrigins:  o.allowedOrigins,
			PingInterval:    o.pingInterval,
			PongWait:        o.pongWait,
			MaxBuffer:       o.maxBuffer,
			MaxBufferBytes:  o.maxBufferBytes,
			MessageRate:     o.messageRate,
			MessageBurst:    o.messageBurst,
			MaxConnsPerUser: o.maxConnsPerUser,
			MaxConnsPerIP:   o.maxConnsPerIP,
			TrustedProxies:  trusted,
		},
		Catalyst: catalyst.Config{MessageLimit: o.messageLimit, MessageTime: o.messageTime},
		HTTP: server.HTTPConfig{
			IdleTimeout:      o.httpIdleTimeout,
			ReadTimeout:      o.httpReadTimeout,
			WriteTimeout:     o.httpWriteTimeout,
			MaxRequestsPerIP: noneIfZero(o.maxRequestsPerIP),
			MaxListBytes:     noneIfZero(o.maxListBytes),
		},
		ShutdownGrace: noneIfZero(o.shutdownGrace),
		NoConsole:     !o.console,
		DevToken:      devTokenMinter(o.devTokens, auth),
	})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	a.logger.Info("pgcast ready", "version", version, "schema_version", st.Current)

	select {
	case s := <-a.signals:
		a.logger.Info("shutting down", "signal", s.String(), "timeout", o.shutdownTimeout.String())
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case s := <-a.signals:
			a.logger.Warn("second signal: exiting now", "signal", s.String())
			os.Exit(1)
		case <-stopped:
		}
	}()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.shutdownTimeout)
	defer cancel()
	if err := srv.Stop(stopCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	a.logger.Info("stopped")
	return nil
}

func schemaVersion() (uint, error) { return pgsql.LatestVersion() }

// noneIfZero maps a flag's 0, which says "none", to the negative value that
// says it in server.Config (where 0 is the default).
func noneIfZero[T int | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// stopWithin stops a component with a bounded context, for deferred,
// ordered shutdown.
func stopWithin(ctx context.Context, d time.Duration, stop func(context.Context) error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	defer cancel()
	_ = stop(sctx)
}
