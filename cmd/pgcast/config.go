package main

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const (
	secretAnnotation = "pgcast_secret"
	secretURL        = "url"   // redact the password inside a URL
	secretValue      = "value" // redact the whole value
	envPrefix        = "PGCAST_"
)

func markSecret(fs *pflag.FlagSet, name, kind string) {
	if err := fs.SetAnnotation(name, secretAnnotation, []string{kind}); err != nil {
		panic(err) // programming error: the flag does not exist
	}
}

// envName is the environment variable for a flag: PGCAST_ plus the flag name
// in upper snake case. --database-url also reads DATABASE_URL, the name
// every Postgres tool knows.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func envNames(flag string) []string {
	if flag == "database-url" {
		return []string{"DATABASE_URL", envName(flag)}
	}
	return []string{envName(flag)}
}

// bindEnv fills every flag not given on the command line from its
// environment variable, so flags win over the environment, which wins over
// defaults.
func (a *app) bindEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		for _, name := range envNames(f.Name) {
			v, ok := a.env.lookup(name)
			if !ok {
				continue
			}
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("invalid %s: %w", name, serr)
				return
			}
			f.Annotations = withSource(f.Annotations, "env "+name)
			return
		}
	})
	return err
}

func withSource(ann map[string][]string, src string) map[string][]string {
	out := make(map[string][]string, len(ann)+1)
	for k, v := range ann {
		out[k] = v
	}
	out["pgcast_source"] = []string{src}
	return out
}

// warnUnknownEnv warns about PGCAST_ variables that match no flag of any
// command: usually a typo that would otherwise be silently ignored.
func (a *app) warnUnknownEnv(root *cobra.Command) {
	known := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { known[envName(f.Name)] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { known[envName(f.Name)] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, kv := range a.env.environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !known[name] {
			a.logger.Warn("unknown environment variable ignored", "name", name)
		}
	}
}

func (a *app) configCmd() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration of `pgcast serve`, secrets redacted",
		Long: `Print the configuration pgcast serve would run with, after applying flags,
environment variables and defaults, and where each value came from.
Passwords in URLs and secrets are redacted.`,
		Example: "  DATABASE_URL=postgres://app:secret@db/app pgcast config",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printConfig(a.stdout, cmd.Flags())
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func printConfig(w interface{ Write([]byte) (int, error) }, fs *pflag.FlagSet) error {
	var rows [][3]string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		src := "default"
		if f.Changed {
			src = "flag"
		}
		if s := f.Annotations["pgcast_source"]; len(s) > 0 {
			src = s[0]
		}
		rows = append(rows, [3]string{f.Name, redact(f), src})
	})
	sort.Slice(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tVALUE\tSOURCE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r[0], r[1], r[2])
	}
	return tw.Flush()
}

func redact(f *pflag.Flag) string {
	v := f.Value.String()
	kind := f.Annotations[secretAnnotation]
	if len(kind) == 0 || v == "" {
		return v
	}
	if kind[0] == secretURL {
		return redactURL(v)
	}
	return "[redacted]"
}

// redactURL hides the password of a postgres:// URL, or the password=…
// setting of a keyword/value connection string.
func redactURL(v string) string {
	if u, err := url.Parse(v); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	if strings.Contains(v, "://") {
		return "[redacted: unparsable URL]"
	}
	fields := strings.Fields(v)
	for i, f := range fields {
		if strings.HasPrefix(f, "password=") {
			fields[i] = "password=xxxxx"
		}
	}
	return strings.Join(fields, " ")
}
