package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/png" // screenshots are PNG
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

// brDemoRPBin is the example relying party (cmd/demo-rp), built by TestMain
// next to the idp binary.
var brDemoRPBin string

const (
	// brChromium is Debian's chromium; CI installs it.
	brChromium = "/usr/bin/chromium"
	// brTestTimeout bounds a whole browser test, browser start included.
	brTestTimeout = 60 * time.Second
	// brStepTimeout bounds one browser step (a navigation, a wait, a click).
	brStepTimeout = 15 * time.Second
	// The fixed viewport of every screenshot, README images included.
	brViewportW, brViewportH = 800, 900
)

// brRequireChromium fails the test when chromium is missing, unless
// IDP_SKIP_BROWSER=1 asks to skip the browser tests.
func brRequireChromium(t *testing.T) {
	t.Helper()
	if os.Getenv("IDP_SKIP_BROWSER") == "1" {
		t.Skip("IDP_SKIP_BROWSER=1: browser tests skipped")
	}
	if fi, err := os.Stat(brChromium); err != nil || fi.IsDir() {
		t.Fatalf("browser tests need chromium at %s (apt-get install chromium), or set IDP_SKIP_BROWSER=1 to skip them: %v", brChromium, err)
	}
}

// brSyncBuffer collects a child process's output.
type brSyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *brSyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *brSyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// brDemoRP is a running cmd/demo-rp process with its registered client.
type brDemoRP struct {
	URL    string // http://127.0.0.1:PORT, no trailing slash
	Client Client
	cmd    *exec.Cmd
	out    brSyncBuffer
	done   chan struct{}
}

// brFreePort returns a loopback port that was free a moment ago.
func brFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// brAddRPClient registers a confidential client for a relying party at base
// (the redirect and post-logout URIs of cmd/demo-rp) and returns it.
func brAddRPClient(t *testing.T, db, id, base string) Client {
	t.Helper()
	out := CLI(t, db, "", "client", "add", id, "--name", "Demo app",
		"--redirect-uri", base+"/callback", "--post-logout-redirect-uri", base+"/", "--json")
	var r struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.ClientSecret == "" {
		t.Fatalf("client add output %q: %v", out, err)
	}
	return Client{ID: r.ClientID, Secret: r.ClientSecret, RedirectURI: base + "/callback"}
}

// brStartDemoRP registers a client and starts the demo relying party on a
// free loopback port, pointed at s. It is stopped when the test ends; on
// failure its log and the provider's are printed.
func brStartDemoRP(t *testing.T, s *Server) *brDemoRP {
	t.Helper()
	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		port := brFreePort(t)
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		rp := &brDemoRP{URL: base, Client: brAddRPClient(t, s.DB, fmt.Sprintf("demo-%d", port), base), done: make(chan struct{})}
		cmd := exec.Command(brDemoRPBin, "--issuer", s.URL, "--client-id", rp.Client.ID,
			"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--base-url", base)
		// The secret goes through the environment, not the command line;
		// no other DEMO_RP_* setting of the caller leaks in.
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "DEMO_RP_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "DEMO_RP_CLIENT_SECRET="+rp.Client.Secret)
		pr, pw := io.Pipe()
		cmd.Stdout = pw
		cmd.Stderr = &rp.out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start demo-rp: %v", err)
		}
		rp.cmd = cmd
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(pr)
			signalled := false
			for sc.Scan() {
				_, _ = rp.out.Write([]byte(sc.Text() + "\n"))
				if !signalled && strings.HasPrefix(sc.Text(), "demo RP listening on ") {
					signalled = true
					close(ready)
				}
			}
		}()
		go func() {
			_ = cmd.Wait()
			pw.Close()
			close(rp.done)
		}()
		select {
		case <-ready:
			t.Cleanup(func() {
				rp.stop()
				if t.Failed() {
					t.Logf("demo-rp output:\n%s", rp.out.String())
					t.Logf("idp output:\n%s", s.Stderr())
				}
			})
			return rp
		case <-rp.done:
			lastErr = rp.out.String() // most likely the port was taken meanwhile
		case <-time.After(10 * time.Second):
			rp.stop()
			t.Fatalf("demo-rp did not start within 10 s:\n%s", rp.out.String())
		}
	}
	t.Fatalf("demo-rp did not start:\n%s", lastErr)
	return nil
}

func (rp *brDemoRP) stop() {
	select {
	case <-rp.done:
		return
	default:
	}
	_ = rp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-rp.done:
	case <-time.After(10 * time.Second):
		_ = rp.cmd.Process.Kill()
		<-rp.done
	}
}

// brDoc is a document (page or frame) response the browser received.
type brDoc struct {
	URL     string
	Status  int64
	FrameID cdp.FrameID
	Headers network.Headers
}

// brBrowser is one headless chromium with one tab, bounded by the test
// timeout. Every page it shows can be saved as a screenshot.
type brBrowser struct {
	t        *testing.T
	ctx      context.Context
	shotsDir string
	shots    int

	mu   sync.Mutex
	docs []brDoc
}

// brNewBrowser starts chromium headless on an empty profile, with only
// loopback networking in use, and a fixed 800×900 viewport at scale 1.
func brNewBrowser(t *testing.T) *brBrowser {
	t.Helper()
	brRequireChromium(t)
	b := &brBrowser{t: t, shotsDir: filepath.Join("..", "testout", "screenshots", t.Name())}
	if err := os.RemoveAll(b.shotsDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(b.shotsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(brChromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(brViewportW, brViewportH),
		chromedp.Flag("disable-background-networking", true),
		// No network but loopback here: no component updates, sync or
		// QUIC probes that would only be refused connections.
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	tctx, cancelTimeout := context.WithTimeout(context.Background(), brTestTimeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(tctx, opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(b.onEvent))
	b.ctx = ctx
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelTimeout()
	})
	// The first action starts the browser, bound to the test timeout.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(brViewportW, brViewportH, chromedp.EmulateScale(1))); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() && ctx.Err() == nil {
			b.shotQuiet("failure")
			t.Logf("browser was at %s", b.url())
		}
	})
	return b
}

// onEvent records document responses (runs in the tab's event loop).
func (b *brBrowser) onEvent(ev any) {
	if ev, ok := ev.(*network.EventResponseReceived); ok && ev.Type == network.ResourceTypeDocument && ev.Response != nil {
		b.mu.Lock()
		b.docs = append(b.docs, brDoc{URL: ev.Response.URL, Status: ev.Response.Status, FrameID: ev.FrameID, Headers: ev.Response.Headers})
		b.mu.Unlock()
	}
}

// lastDoc is the latest document response whose URL contains part.
func (b *brBrowser) lastDoc(part string) (brDoc, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.docs) - 1; i >= 0; i-- {
		if strings.Contains(b.docs[i].URL, part) {
			return b.docs[i], true
		}
	}
	return brDoc{}, false
}

// step runs fn with a step timeout and fails the test on error.
func (b *brBrowser) step(what string, fn func(ctx context.Context) error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, brStepTimeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		b.t.Fatalf("%s: %v (browser at %s)", what, err, b.url())
	}
}

// do runs actions as one step.
func (b *brBrowser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.step(what, func(ctx context.Context) error { return chromedp.Do(ctx, actions...) })
}

// navigate loads u and waits for its load event.
func (b *brBrowser) navigate(u string) {
	b.t.Helper()
	b.do("navigate to "+u, chromedp.Navigate(u))
}

// clickAndLoad clicks the element and waits for the page it leads to
// (after any redirects) to fire its load event.
func (b *brBrowser) clickAndLoad(what string, sel string) {
	b.t.Helper()
	b.step(what, func(ctx context.Context) error {
		_, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil,
			chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)))
		return err
	})
}

// waitVisible waits until an element matching sel is visible.
func (b *brBrowser) waitVisible(what, sel string) {
	b.t.Helper()
	b.do(what, chromedp.WaitVisible(chromedp.CSS(sel)))
}

// typeInto types text into the field matching sel.
func (b *brBrowser) typeInto(sel, text string) {
	b.t.Helper()
	b.do("type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible))
}

// text is the rendered text of the first element matching sel.
func (b *brBrowser) text(sel string) string {
	b.t.Helper()
	var s string
	b.step("text of "+sel, func(ctx context.Context) error {
		var err error
		s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
		return err
	})
	return s
}

// value is the value of the form field matching sel (a textarea's text).
func (b *brBrowser) value(sel string) string {
	b.t.Helper()
	var s string
	b.step("value of "+sel, func(ctx context.Context) error {
		var err error
		s, err = chromedp.Run(ctx, chromedp.Value(chromedp.CSS(sel), chromedp.NodeVisible))
		return err
	})
	return s
}

// has reports whether an element matching sel exists now (no waiting).
func (b *brBrowser) has(sel string) bool {
	b.t.Helper()
	var n int
	b.step("count "+sel, func(ctx context.Context) error {
		var err error
		n, err = chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
		return err
	})
	return n > 0
}

// url is the current page's URL, or a note when it cannot be read.
func (b *brBrowser) url() string {
	ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	return u
}

// png takes a full-page PNG screenshot at the fixed viewport width.
func (b *brBrowser) png(ctx context.Context) ([]byte, error) {
	return chromedp.Run(ctx, chromedp.FullScreenshot(100))
}

// shot saves a screenshot of the current page as
// testout/screenshots/<Test>/NN-name.png; readme, when not empty and
// IDP_SCREENSHOTS_DIR is set, is the file name it is also saved under there
// (the README's images).
func (b *brBrowser) shot(name, readme string) []byte {
	b.t.Helper()
	var img []byte
	b.step("screenshot "+name, func(ctx context.Context) error {
		var err error
		img, err = b.png(ctx)
		return err
	})
	b.shots++
	path := filepath.Join(b.shotsDir, fmt.Sprintf("%02d-%s.png", b.shots, name))
	if err := os.WriteFile(path, img, 0o644); err != nil {
		b.t.Fatal(err)
	}
	if dir := os.Getenv("IDP_SCREENSHOTS_DIR"); dir != "" && readme != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, readme), img, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	return img
}

// shotQuiet is shot for the failure path: errors are only logged.
func (b *brBrowser) shotQuiet(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	img, err := b.png(ctx)
	if err != nil {
		b.t.Logf("failure screenshot: %v", err)
		return
	}
	b.shots++
	path := filepath.Join(b.shotsDir, fmt.Sprintf("%02d-%s.png", b.shots, name))
	if err := os.WriteFile(path, img, 0o644); err == nil {
		b.t.Logf("failure screenshot: %s", path)
	}
}

// elementShot is a PNG screenshot of the first element matching sel.
func (b *brBrowser) elementShot(sel string) []byte {
	b.t.Helper()
	var img []byte
	b.step("screenshot of "+sel, func(ctx context.Context) error {
		var err error
		img, err = chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
		return err
	})
	return img
}

// brDecodeQR finds and decodes a QR code in a PNG image.
func brDecodeQR(png []byte) (string, error) {
	img, _, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		return "", fmt.Errorf("decode png: %w", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
	if err != nil {
		return "", fmt.Errorf("no QR code found in the %dx%d screenshot: %w", img.Bounds().Dx(), img.Bounds().Dy(), err)
	}
	return res.GetText(), nil
}

// brWrongCode is a well-formed code that is certainly wrong for the secret
// around now (it matches none of the steps the server could accept).
func brWrongCode(u User) string {
	now := time.Now()
	near := map[string]bool{}
	for d := -3; d <= 3; d++ {
		near[u.Code(now.Add(time.Duration(d)*30*time.Second))] = true
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (i*137593+424242)%1000000)
		if !near[c] {
			return c
		}
	}
}

// brSigninPage drives the demo RP from its home page to the provider's
// password page and returns the browser's URL there.
func brSigninPage(b *brBrowser, rp *brDemoRP, s *Server, shotName, readme string) string {
	b.t.Helper()
	b.navigate(rp.URL + "/")
	b.waitVisible("demo RP home page", `a.button[href="/login"]`)
	b.shot("rp-home", "")
	b.clickAndLoad("click Log in", `a.button[href="/login"]`)
	b.waitVisible("password page", "#username")
	b.waitVisible("password page", "#password")
	u := b.url()
	if !strings.HasPrefix(u, s.URL+"/login/") {
		b.t.Fatalf("Log in led to %s, want the provider's login page under %s/login/", u, s.URL)
	}
	b.shot(shotName, readme)
	return u
}

// brSubmitPassword fills the password form and submits it.
func brSubmitPassword(b *brBrowser, name, password string) {
	b.t.Helper()
	b.typeInto("#username", name)
	b.typeInto("#password", password)
	b.clickAndLoad("submit password", `form[action="/login/password"] button[type=submit]`)
}

// brSubmitCode types a code into the (fresh, empty) #code field and
// submits its form.
func brSubmitCode(b *brBrowser, form, code string) {
	b.t.Helper()
	b.typeInto("#code", code)
	b.clickAndLoad("submit code", fmt.Sprintf(`form[action=%q] button[type=submit]`, form))
}
