package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/db"
)

// server is where scenario databases are created.
type server struct {
	adminURL string
	tag      string // random: tells apart the servers of one process
	seq      atomic.Int64
	template *scenario // migrated and prepared once, copied for each scenario
}

func newServer(adminURL string) (*server, error) {
	if _, err := pgx.ParseConfig(adminURL); err != nil {
		return nil, fmt.Errorf("invalid database URL: %w", err)
	}
	return &server{adminURL: adminURL, tag: strconv.FormatUint(rand.Uint64()%(36*36*36*36), 36)}, nil
}

// scenario is one fresh, migrated database with an object class "bench"
// whose only field, "seq", is an integer, and public.plain_records: a copy of
// pgcast.object_records (same columns, defaults, constraints, indexes and
// foreign key) without pgcast's triggers.
type scenario struct {
	srv      *server
	name     string
	url      string
	classID  int64
	fieldKey string // the seq field's id, as cells are keyed
}

// newScenario creates a database for one scenario: a copy of the template,
// which is created, migrated and prepared on first use.
func (s *server) newScenario(ctx context.Context, label string) (*scenario, error) {
	if s.template == nil {
		t, err := s.create(ctx, "template", "")
		if err != nil {
			return nil, err
		}
		s.template = t
	}
	return s.create(ctx, label, s.template.name)
}

// close drops the template.
func (s *server) close() {
	if s.template != nil {
		s.template.drop()
		s.template = nil
	}
}

// create creates a database, from template when given (then already
// prepared), otherwise migrated and prepared here.
func (s *server) create(ctx context.Context, label, template string) (_ *scenario, err error) {
	name := fmt.Sprintf("pgcast_bench_%d_%s_%d_%s", os.Getpid(), s.tag, s.seq.Add(1), label)
	u, err := withDatabase(s.adminURL, name)
	if err != nil {
		return nil, err
	}
	sc := &scenario{srv: s, name: name, url: u}
	ident := pgx.Identifier{name}.Sanitize()
	create := `CREATE DATABASE ` + ident
	if template != "" {
		create += ` TEMPLATE ` + pgx.Identifier{template}.Sanitize()
	}
	if err := s.exec(ctx, `DROP DATABASE IF EXISTS `+ident, create); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			sc.drop()
		}
	}()
	if template == "" {
		m, err := db.NewMigrator(u, nil)
		if err != nil {
			return nil, err
		}
		err = m.Up(ctx)
		if cerr := m.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close migrator: %w", cerr)
		}
		if err != nil {
			return nil, fmt.Errorf("migrate %s: %w", name, err)
		}
	}
	conn, err := connect(ctx, u)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if template == "" {
		err = prepare(ctx, conn)
		if err != nil {
			return nil, err
		}
	}
	var fieldID int64
	if err := conn.QueryRow(ctx, `SELECT c.id, f.id FROM pgcast.object_classes c JOIN pgcast.object_class_fields f ON f.object_class_id = c.id
WHERE c.name = 'bench' AND f.name = 'seq'`).Scan(&sc.classID, &fieldID); err != nil {
		return nil, fmt.Errorf("look up object class: %w", err)
	}
	sc.fieldKey = strconv.FormatInt(fieldID, 10)
	return sc, nil
}

// prepare creates the object class and the plain table.
func prepare(ctx context.Context, conn *pgx.Conn) error {
	var classID int64
	if err := conn.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name, read_rule) VALUES ('bench', 'public') RETURNING id`).Scan(&classID); err != nil {
		return fmt.Errorf("create object class: %w", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'seq', 'integer')`, classID); err != nil {
		return fmt.Errorf("create field: %w", err)
	}
	// LIKE copies columns, defaults, identity, CHECKs and indexes but not
	// foreign keys: add object_records' one, whose check every insert pays.
	if _, err := conn.Exec(ctx, `CREATE TABLE public.plain_records (LIKE pgcast.object_records INCLUDING ALL);
ALTER TABLE public.plain_records ADD FOREIGN KEY (object_class_id) REFERENCES pgcast.object_classes (id) ON DELETE CASCADE`); err != nil {
		return fmt.Errorf("create plain table: %w", err)
	}
	// The collection_created entry is history the scenarios do not need.
	if _, err := conn.Exec(ctx, `DELETE FROM pgcast.events`); err != nil {
		return fmt.Errorf("clear event log: %w", err)
	}
	return nil
}

// drop drops the database, cutting any connection still open.
func (sc *scenario) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = sc.srv.exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{sc.name}.Sanitize()+` WITH (FORCE)`)
}

func (s *server) exec(ctx context.Context, stmts ...string) error {
	conn, err := connect(ctx, s.adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, st := range stmts {
		if _, err := conn.Exec(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// connect opens one plain connection, bounded to 10 s.
func connect(ctx context.Context, u string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(u)
	if err != nil {
		return nil, fmt.Errorf("invalid database URL: %w", err)
	}
	cc.RuntimeParams["application_name"] = "pgcast-bench"
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

// connectN opens n connections.
func connectN(ctx context.Context, u string, n int) ([]*pgx.Conn, error) {
	conns := make([]*pgx.Conn, 0, n)
	for range n {
		c, err := connect(ctx, u)
		if err != nil {
			closeAll(ctx, conns)
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(ctx context.Context, conns []*pgx.Conn) {
	for _, c := range conns {
		_ = c.Close(context.WithoutCancel(ctx))
	}
}

// withDatabase returns the connection string u with its database replaced.
func withDatabase(u, name string) (string, error) {
	if strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		p, err := url.Parse(u)
		if err != nil {
			return "", fmt.Errorf("invalid database URL: %w", err)
		}
		p.Path, p.RawPath = "/"+name, ""
		q := p.Query()
		if q.Has("dbname") || q.Has("database") {
			q.Del("dbname")
			q.Del("database")
			p.RawQuery = q.Encode()
		}
		return p.String(), nil
	}
	// Keyword/value: a later setting wins.
	return u + " dbname=" + name, nil
}
