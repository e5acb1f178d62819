package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// env is the process environment, injected so tests need not mutate os state.
type env struct {
	lookup  func(string) (string, bool)
	environ func() []string
	// wd is the working directory: relative paths such as dev's --dir are
	// resolved against it, and commands look for a `pgcast dev` state from
	// it upwards. "": the process's, and no such lookup.
	wd string
}

// app carries what every command shares: the I/O streams, the environment,
// the signal channel and the global options.
type app struct {
	stdout, stderr io.Writer
	env            env
	signals        <-chan os.Signal

	databaseURL string
	logFormat   string
	logLevel    string
	logger      *slog.Logger
}

// execute runs the command line and returns the process exit code. Errors are
// printed as one line, never with a stack trace or the usage text.
func execute(ctx context.Context, args []string, e env, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	a := &app{stdout: stdout, stderr: stderr, env: e, signals: signals}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", cmd.CommandPath(), oneLine(err))
		return 1
	}
	return 0
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "pgcast",
		Short: "Stream PostgreSQL changes to WebSocket clients",
		Long: `pgcast turns every change in PostgreSQL into real-time WebSocket streams.

Database triggers append each change to a durable, ordered event log; a reader
decodes each entry once; a hub fans it out to every permitted subscriber.

Configuration: flags > environment (PGCAST_<FLAG>, e.g. PGCAST_ADDR, and
DATABASE_URL for --database-url) > defaults.`,
		Example:       "  pgcast dev\n  pgcast serve --database-url postgres://localhost/app --migrate",
		SilenceUsage:  true,
		SilenceErrors: true,
		CompletionOptions: cobra.CompletionOptions{
			DisableDefaultCmd: true,
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.bindEnv(cmd); err != nil {
				return err
			}
			logger, err := newLogger(a.stderr, a.logFormat, a.logLevel)
			if err != nil {
				return err
			}
			a.logger = logger
			a.warnUnknownEnv(cmd.Root())
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.databaseURL, "database-url", "", "PostgreSQL connection URL (env DATABASE_URL)")
	markSecret(pf, "database-url", secretURL)
	pf.StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())
	})
	root.AddCommand(a.serveCmd(), a.devCmd(), a.migrateCmd(), a.configCmd(), a.versionCmd(), a.benchCmd(), a.tokenCmd(), a.collectionsCmd(), a.watchCmd())
	return root
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: want text or json", format)
}

// requireDatabaseURL returns the effective database URL or a one-line error
// saying how to provide it. serve uses it: a server never falls back to a
// dev database.
func (a *app) requireDatabaseURL() (string, error) {
	if a.databaseURL == "" {
		return "", errors.New("no database: set DATABASE_URL or --database-url (or run `pgcast dev` for a throwaway local cluster)")
	}
	return a.databaseURL, nil
}

// databaseURLOrDev is requireDatabaseURL for the tools (migrate,
// collections): without DATABASE_URL they use the database of the running
// `pgcast dev` found from the working directory (see findDevState), and say
// so on stderr.
func (a *app) databaseURLOrDev() (string, error) {
	if a.databaseURL != "" {
		return a.databaseURL, nil
	}
	st, path, ok := a.findDevState()
	if !ok || st.URL == "" {
		return a.requireDatabaseURL()
	}
	if !st.running() {
		return "", fmt.Errorf("no database: set DATABASE_URL or --database-url, or start `pgcast dev` (make run) again: the dev database recorded in %s is not running", path)
	}
	a.logger.Info("no DATABASE_URL: using the database of the running `pgcast dev`", "url", st.URL, "state", path)
	return st.URL, nil
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the pgcast version and the schema version it needs",
		Example: "  pgcast version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			latest, err := schemaVersion()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "pgcast %s (schema version %d)\n", version, latest)
			return nil
		},
	}
}
