package e2e

import (
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pgProxy forwards TCP connections on 127.0.0.1 to the test server's Unix
// socket, and can drop them all and refuse new ones: a PostgreSQL
// restart, as the replicas see it, without touching the shared cluster.
type pgProxy struct {
	t      testing.TB
	addr   string // 127.0.0.1:port, the same across stop and start
	socket string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func startPGProxy(t testing.TB) *pgProxy {
	t.Helper()
	u, err := url.Parse(os.Getenv(envPostgresURL))
	if err != nil {
		t.Fatal(err)
	}
	host := u.Query().Get("host")
	if !strings.HasPrefix(host, "/") {
		t.Skipf("the outage test proxies a Unix-socket server (%s has host %q)", envPostgresURL, host)
	}
	port := u.Query().Get("port")
	if port == "" {
		port = "5432"
	}
	p := &pgProxy{t: t, socket: filepath.Join(host, ".s.PGSQL."+port), conns: map[net.Conn]bool{}}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *pgProxy) start() {
	p.t.Helper()
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *pgProxy) pipe(c net.Conn) {
	s, err := net.Dial("unix", p.socket)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
}

// stop drops every connection and refuses new ones until start.
func (p *pgProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// url is db (a PostgresDB URL) reached through the proxy.
func (p *pgProxy) url(db string) string {
	u, _ := url.Parse(db)
	user := u.Query().Get("user")
	if u.User != nil {
		user = u.User.Username()
	}
	out := "postgres://" + user + "@" + p.addr + u.Path + "?sslmode=disable"
	if k, ok := postgresKeys.Load(db); ok {
		postgresKeys.Store(out, k)
	}
	return out
}
