package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildIDP compiles the real idp binary into dir, from the module that
// holds the current directory, so the benchmark measures what ships.
func buildIDP(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run idp-bench from inside the idp module (go env GOMOD is empty)")
	}
	bin := filepath.Join(dir, "idp")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/idp")
	build.Dir = filepath.Dir(gomod)
	var stderr bytes.Buffer
	build.Stdout, build.Stderr = io.Discard, &stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/idp: %w\n%s", err, stderr.String())
	}
	return bin, nil
}

// writeSecretKey creates DB.key, the secret key file that `idp serve` and
// the CLI use for db when no --secret-key-file is given: 32 random bytes in
// base64, mode 0600.
func writeSecretKey(db string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	return os.WriteFile(db+".key", []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
}

// server is a running `idp serve` process.
type server struct {
	cmd        *exec.Cmd
	pid        int
	issuer     string
	addr       string // the address it listens on
	metricsURL string
	done       chan struct{}

	mu   sync.Mutex
	tail []string // last lines of stderr, for error reports
}

var (
	listeningRe = regexp.MustCompile(`idp listening on (\S+) \(issuer (\S+)\)`)
	metricsRe   = regexp.MustCompile(`idp metrics on (\S+)`)
)

// startServer runs `idp serve` on db at a free loopback port, with the
// metrics listener on, and waits until it prints its address. The secret
// key is DB.key (writeSecretKey).
func startServer(bin, db string, extra ...string) (*server, error) {
	args := append([]string{"serve", "--db", db, "--listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0", "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = io.Discard, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start idp serve: %w", err)
	}
	s := &server{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	ready := make(chan struct{}, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.tail = append(s.tail, line)
			if len(s.tail) > 40 {
				s.tail = s.tail[len(s.tail)-40:]
			}
			if m := metricsRe.FindStringSubmatch(line); m != nil {
				s.metricsURL = m[1]
			}
			if m := listeningRe.FindStringSubmatch(line); m != nil {
				s.addr, s.issuer = m[1], m[2]
				ready <- struct{}{}
			}
			s.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	select {
	case <-ready:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("idp serve exited before listening:\n%s", s.stderrTail())
	case <-time.After(30 * time.Second):
		s.stop()
		return nil, fmt.Errorf("idp serve did not listen within 30 s:\n%s", s.stderrTail())
	}
}

func (s *server) stderrTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
}

// alive reports whether the process is still running.
func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop ends the server gracefully (SIGTERM), killing it after 10 s.
func (s *server) stop() {
	if !s.alive() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// hashes reads the server's idp_password_hashes_total counter.
func (s *server) hashes(hc *http.Client) (int64, error) {
	resp, err := hc.Get(s.metricsURL)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "idp_password_hashes_total "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("metrics: no idp_password_hashes_total")
}

// procStat is what /proc/PID/stat says about a process's CPU use so far.
type procStat struct {
	User, System time.Duration // utime and stime, including exited threads
	MinorFaults  int64         // page faults served without I/O (fresh heap pages)
}

func (p procStat) cpu() time.Duration { return p.User + p.System }

func (p procStat) sub(q procStat) procStat {
	return procStat{User: p.User - q.User, System: p.System - q.System, MinorFaults: p.MinorFaults - q.MinorFaults}
}

// readProcStat parses /proc/PID/stat.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) may hold spaces; the fields after it are
	// fixed: state is field 3, minflt 10, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return procStat{}, errors.New("short /proc stat")
	}
	var v [3]int64
	for j, k := range []int{7, 11, 12} {
		if v[j], err = strconv.ParseInt(f[k], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("malformed /proc stat: %w", err)
		}
	}
	tick := time.Second / time.Duration(clockTicks())
	return procStat{MinorFaults: v[0], User: time.Duration(v[1]) * tick, System: time.Duration(v[2]) * tick}, nil
}

// machineBusy is the CPU time all processors spent on anything but idle
// and I/O wait since boot (/proc/stat), to tell other load on the machine
// from the benchmark's own.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, errors.New("malformed /proc/stat")
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat: %w", err)
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / time.Duration(clockTicks()), nil
}

var (
	ticksOnce sync.Once
	ticks     int64
)

// clockTicks is USER_HZ, the unit of /proc times (100 on Linux nearly
// everywhere; getconf knows for sure).
func clockTicks() int64 {
	ticksOnce.Do(func() {
		ticks = 100
		if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
			if v, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && v > 0 {
				ticks = v
			}
		}
	})
	return ticks
}

// memStatus returns a field of /proc/PID/status in bytes (VmHWM, VmRSS).
func memStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// resetPeakRSS restarts VmHWM from the current RSS (clear_refs value 5,
// Linux ≥ 4.0), so a peak can be attributed to one phase.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// cliTimeout bounds one CLI command (a user add costs two argon2id hashes
// and a process start: well under a second on an idle machine).
const cliTimeout = 60 * time.Second

// runCLI runs an idp subcommand against db and returns its stdout.
func runCLI(ctx context.Context, bin, db, stdin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--db", db)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("%w (killed after %s)", err, cliTimeout)
		case ctx.Err() != nil:
			err = fmt.Errorf("%w (interrupted)", err)
		}
		return nil, fmt.Errorf("idp %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.Bytes(), nil
}
