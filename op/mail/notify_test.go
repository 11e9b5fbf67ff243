package mail

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

var bareKey = regexp.MustCompile(`\bmail\.[a-z_]+\.[a-z_]+`)

// TestEveryKindHasItsText: each notification kind, with the arguments its
// callers give, makes a mail from the catalogue with no bare key and no
// format error, in text and HTML; a kind without text makes none (it is
// dropped, never sent as a key).
func TestEveryKindHasItsText(t *testing.T) {
	p, err := pages.New("Example IdP", nil)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(make([]byte, 32), "")
	if err != nil {
		t.Fatal(err)
	}
	n := &Notifier{Sealer: sealer, Text: p.Text, Product: "Example IdP", Now: func() time.Time { return time.Unix(1_900_000_000, 0) }}
	u := storage.User{ID: "u1", Username: "ann", Name: "Ann <b>Lee</b>", Email: "ann@example.com", EmailVerified: true}
	for kind, args := range map[string][]any{
		SecondFactorFailed: nil, SecondFactorLocked: nil,
		PasswordChanged: {HowAccount}, AuthenticatorAdded: nil, AuthenticatorReplaced: {HowAccount}, AuthenticatorRemoved: nil,
		RecoveryCodesRenewed: {HowOperator}, RecoveryCodeUsed: {7}, NewDevice: {"Firefox/140", "192.0.2.1"},
		EmailChanged: {Mask("new@example.org"), HowOperator},
	} {
		m, err := n.Make(context.Background(), u, u.Email, kind, args...)
		if err != nil {
			t.Errorf("%s: %v", kind, err)
			continue
		}
		plain, err := sealer.Open(AAD(m.ID), m.Body)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := decode(plain)
		if err != nil {
			t.Fatal(err)
		}
		for what, s := range map[string]string{"subject": msg.Subject, "text": msg.Text, "html": msg.HTML} {
			if s == "" || bareKey.MatchString(s) || strings.Contains(s, "%!") || strings.Contains(s, "%[") {
				t.Errorf("%s: %s %q", kind, what, s)
			}
		}
		if !strings.Contains(msg.Subject, "Example IdP") || !strings.Contains(msg.Text, "ann") {
			t.Errorf("%s: subject %q, text %q", kind, msg.Subject, msg.Text)
		}
		// A display name is text in the HTML part, never markup.
		if strings.Contains(msg.HTML, "<b>Lee") || !strings.Contains(msg.HTML, "&lt;b&gt;Lee") {
			t.Errorf("%s: the name in the HTML part: %s", kind, msg.HTML)
		}
		if m.OncePer != oncePer[kind] {
			t.Errorf("%s: once per %s", kind, m.OncePer)
		}
	}
	if _, err := n.Make(context.Background(), u, u.Email, "no_such_kind"); err == nil {
		t.Error("a kind without catalogue text made a mail")
	}
	if _, err := n.Make(context.Background(), u, u.Email, RecoveryCodeUsed); err == nil {
		t.Error("a kind given too few arguments made a mail")
	}
}

// TestHTMLLinks: a paragraph that is one http(s) URL becomes a link; any
// other scheme, or a URL inside a sentence, stays text.
func TestHTMLLinks(t *testing.T) {
	h := HTML("s", "Open this:\n\nhttps://idp.example/reset?t=abc&x=1\n\njavascript:alert(1)\n\nsee https://x.example now")
	if !strings.Contains(h, `<a href="https://idp.example/reset?t=abc&amp;x=1">`) {
		t.Errorf("no link for the URL paragraph:\n%s", h)
	}
	if strings.Count(h, "<a ") != 1 || strings.Contains(h, `href="javascript`) {
		t.Errorf("links other than the URL paragraph:\n%s", h)
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{"nora@example.org": "n…@example.org", "ä@x.example": "ä…@x.example", "bad": "…", "@x": "…"} {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLinkDigest: only a token of SendLink's shape reaches the store.
func TestLinkDigest(t *testing.T) {
	good := strings.Repeat("A", 42) + "_"
	if LinkDigest(good) == nil {
		t.Fatal("a well-formed token refused")
	}
	for _, bad := range []string{"", good[:42], good + "A", strings.Repeat("A", 42) + "=", strings.Repeat("A", 42) + "\n", strings.Repeat("é", 21) + "A"} {
		if LinkDigest(bad) != nil {
			t.Errorf("token %q accepted", bad)
		}
	}
}

// TestValuesWithPercent: a value that looks like a format error (a
// browser's User-Agent, a name) is text in the notice, which is still
// made (review H, F1: "%!" in a User-Agent silenced the new-browser
// notice).
func TestValuesWithPercent(t *testing.T) {
	p, err := pages.New("Example IdP", nil)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(make([]byte, 32), "")
	if err != nil {
		t.Fatal(err)
	}
	n := &Notifier{Sealer: sealer, Text: p.Text, Product: "Example IdP"}
	u := storage.User{ID: "u1", Username: "ann", Name: "Ann %!d(MISSING) %s", Email: "ann@example.com", EmailVerified: true}
	m, err := n.Make(context.Background(), u, u.Email, NewDevice, "Mozilla/5.0 %!(EXTRA) %d", "192.0.2.1")
	if err != nil {
		t.Fatalf("a notice with %%! in its values: %v", err)
	}
	plain, _ := sealer.Open(AAD(m.ID), m.Body)
	msg, _ := decode(plain)
	if !strings.Contains(msg.Text, "Mozilla/5.0 %!(EXTRA) %d") || !strings.Contains(msg.Text, "Ann %!d(MISSING) %s") {
		t.Fatalf("the values are not the notice's text: %s", msg.Text)
	}
}
