//go:build linux

// Package pgtest starts a throwaway PostgreSQL cluster for tests, from the
// server binaries of Debian's postgresql package
// (/usr/lib/postgresql/VERSION/bin/initdb and postgres).
//
// The cluster listens only on a unix socket in its own temporary directory
// (no TCP port, so parallel test binaries never clash), trusts local
// connections and runs with fsync off. When the tests run as root, initdb
// and postgres run as the unprivileged "postgres" user (created by the
// Debian package), because PostgreSQL refuses to run as root.
//
// Missing binaries skip the test, or fail it under CI=true (see
// internal/testutil).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confidisk/confidisk/internal/testutil"
)

// Cluster is a running PostgreSQL server.
type Cluster struct {
	dir string // data directory; the socket lives here too
	cmd *exec.Cmd

	mu   sync.Mutex
	next int // suffix of the next database NewDatabase creates
}

// binDir finds the newest /usr/lib/postgresql/*/bin with initdb in it.
func binDir() (string, error) {
	matches, err := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if err != nil || len(matches) == 0 {
		return "", errors.New("no /usr/lib/postgresql/*/bin/initdb")
	}
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi < vj
	})
	return filepath.Dir(matches[len(matches)-1]), nil
}

// Start initialises and starts a cluster; it is stopped and removed when the
// test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		testutil.Missing(t, "PostgreSQL server (initdb, postgres)", "apt-get install -y postgresql")
	}
	cred, uid, gid := (*syscall.Credential)(nil), -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			testutil.Missing(t, `the unprivileged "postgres" user`, "apt-get install -y postgresql")
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parents are private to the test's user, and the
	// postgres user must reach this directory.
	dir, err := os.MkdirTemp("", "confidisk-pg-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if cred != nil {
		for _, p := range []string{dir, data} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatalf("pgtest: %v", err)
			}
		}
	}
	run := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
		cmd.Dir = dir
		// Pdeathsig: an immediate shutdown if the test binary dies.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
		return cmd
	}
	out, err := run("initdb", "-D", data, "--username=postgres", "--auth=trust", "--encoding=UTF8",
		"--locale=C", "--no-sync", "--no-instructions").CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer logf.Close()
	cmd := run("postgres", "-D", data, "-k", dir, "-c", "listen_addresses=", "-c", "fsync=off",
		"-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("pgtest: start postgres: %v", err)
	}
	c := &Cluster{dir: dir, cmd: cmd}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGINT is PostgreSQL's "fast" shutdown.
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err == nil {
			conn.Close(ctx)
			return c
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("pgtest: postgres exited (%v):\n%s", err, log)
		case <-ctx.Done():
			log, _ := os.ReadFile(logPath)
			t.Fatalf("pgtest: postgres not ready after 60s: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) url(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", c.dir, db)
}

// NewDatabase creates an empty database in the cluster and returns its
// connection string (for pgx / store/postgres.Open).
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	c.mu.Lock()
	c.next++
	name := fmt.Sprintf("test_%d", c.next)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return c.url(name)
}
