package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pgcast/pgcast/server/auth"
)

// authOptions are the JWT settings shared by `pgcast token` and the server.
type authOptions struct {
	secret   string
	issuer   string
	audience string
}

func (o *authOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.secret, "jwt-secret", "", fmt.Sprintf("HS256 secret JWTs are signed with, used as raw bytes, at least %d bytes", auth.MinSecretLen))
	markSecret(fs, "jwt-secret", secretValue)
	fs.StringVar(&o.issuer, "jwt-issuer", "", "required iss claim of JWTs, written into minted tokens (default: not checked)")
	fs.StringVar(&o.audience, "jwt-audience", "", "required aud claim of JWTs, written into minted tokens (default: not checked)")
}

// authenticator builds the server's Authenticator, with errors that name the
// flag and its environment variable instead of the Go field.
func (o *authOptions) authenticator() (*auth.Authenticator, error) {
	if o.secret == "" {
		return nil, errors.New("no JWT secret: set PGCAST_JWT_SECRET or --jwt-secret")
	}
	if len(o.secret) < auth.MinSecretLen {
		return nil, fmt.Errorf("--jwt-secret (PGCAST_JWT_SECRET) is %d bytes, want at least %d (e.g. `openssl rand -base64 48`)", len(o.secret), auth.MinSecretLen)
	}
	return auth.NewAuthenticator(auth.Config{Secret: []byte(o.secret), Issuer: o.issuer, Audience: o.audience})
}

func (a *app) tokenCmd() *cobra.Command {
	opts := &authOptions{}
	var (
		sub  string
		role string
		env  int64
		ttl  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a JWT for development and testing",
		Long: `Mint an HS256 JWT that pgcast accepts, and print it on stdout.

The token carries sub (the user id), role ("admin" or "authenticated"), env
(the environment id) and exp, plus iss and aud when --jwt-issuer and
--jwt-audience are set. Sign it with the secret the server verifies with
(--jwt-secret or PGCAST_JWT_SECRET). Without one, in a directory where
` + "`pgcast dev`" + ` runs (or ran) with its development secret, token mints with
that secret and says so on stderr. In production, tokens come from your
application's identity provider instead.`,
		Example: `  export PGCAST_JWT_SECRET=$(openssl rand -base64 48)
  pgcast token --sub u1
  TOKEN=$(pgcast token --sub admin1 --role admin --env 1 --ttl 1h)
  curl -H "Authorization: Bearer $TOKEN" http://localhost:8080/api/users/ws-auth/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sub == "" {
				return errors.New("--sub is required: the user id the token is for")
			}
			r, err := auth.ParseRole(role)
			if err != nil {
				return fmt.Errorf("invalid --role %q: %w", role, err)
			}
			if env < 1 {
				return fmt.Errorf("invalid --env %d: want an environment id ≥ 1", env)
			}
			if ttl <= 0 {
				return fmt.Errorf("invalid --ttl %s: want a positive duration such as 1h", ttl)
			}
			if opts.secret == "" {
				if err := a.devTokenSecret(opts); err != nil {
					return err
				}
			}
			au, err := opts.authenticator()
			if err != nil {
				return err
			}
			tok, err := au.Mint(sub, r, env, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, tok)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&sub, "sub", "", "user id (sub claim); required")
	fs.StringVar(&role, "role", "authenticated", `role claim: "admin" or "authenticated"`)
	fs.Int64Var(&env, "env", 1, "environment id (env claim)")
	fs.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	opts.addFlags(fs)
	return cmd
}

// devTokenSecret, when no secret is given, takes the development secret if
// the `pgcast dev` found from the working directory serves with it (see
// findDevState), and says so on stderr. It fails when that dev server has a
// secret of its own, which token cannot know.
func (a *app) devTokenSecret(opts *authOptions) error {
	st, path, ok := a.findDevState()
	if !ok {
		return nil // authenticator says what to set
	}
	if !st.DevJWTSecret {
		return fmt.Errorf("no JWT secret: set PGCAST_JWT_SECRET or --jwt-secret to the secret the `pgcast dev` recorded in %s serves with", path)
	}
	opts.secret = devJWTSecret
	a.logger.Warn("no --jwt-secret: minting with the public development secret, as `pgcast dev` serves with it", "state", path)
	return nil
}
