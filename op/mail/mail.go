// Package mail sends the provider's e-mail (issue 13): messages are rows
// of the storage outbox, written with the event that causes them
// (storage.WithMail); Sender delivers due rows through a Transport (SMTP,
// or .eml files in --dev), with retries and exponential backoff, and
// gives up after GiveUpAfter with an audit event. Nothing here runs on a
// sign-in's path: a slow or absent mail server delays only the outbox.
package mail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"

	gomail "github.com/wneessen/go-mail"

	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

// Message is what a notification says, before it is sealed into an
// outbox row's body.
type Message struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html,omitempty"`
}

// AAD binds a sealed body to its outbox row; `idp secrets rotate`
// reseals the outbox's bodies with the rest (storage.SecretMail).
func AAD(id string) string { return seal.AADMail(id) }

// encode and decode are a Message's form inside the sealed body.
func encode(m Message) ([]byte, error) { return json.Marshal(m) }

func decode(b []byte) (Message, error) {
	var m Message
	err := json.Unmarshal(b, &m)
	return m, err
}

// ErrBadAddress: an address that is not exactly one plain mailbox.
var ErrBadAddress = errors.New("mail: not a single plain address")

// Address checks that s is exactly one mailbox, nothing else: no display
// name, no group, no second address, no space, control or format
// character (header injection: a CR or LF in a stored address must never
// add a header or a recipient), at most 254 bytes (RFC 5321 §4.5.3.1.3).
// The local part is dot-atoms of ASCII without "%" and "!" (the old
// relay routes), the domain a DNS name with a dot: no address literal
// ([127.0.0.1]), no host of the local network ("a@b"), no Unicode
// spelling of a domain (its xn-- form is the one; review H, F3). It is
// also the rule for the addresses operators store (admin.CheckEmail).
func Address(s string) (string, error) {
	if _, err := FromAddress(s); err != nil {
		return "", err
	}
	at := strings.LastIndexByte(s, '@')
	if at < 1 || !localPart(s[:at]) || !domainName(s[at+1:]) {
		return "", ErrBadAddress
	}
	return s, nil
}

// FromAddress checks the operator's From address (--smtp-from): exactly one
// plain mailbox, no display name, no second address, no space, control or
// format character. It is not a recipient's stricter rule (Address): a
// From of the operator's own host ("idp@localhost", the --mail-dir
// default) is theirs to choose.
func FromAddress(s string) (string, error) {
	if s == "" || len(s) > 254 || !storage.Printable(s) || strings.ContainsFunc(s, unicode.IsSpace) {
		return "", ErrBadAddress
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", ErrBadAddress
	}
	return a.Address, nil
}

// localPart: dot-separated runs of RFC 5322 atext in ASCII, less "%"
// and "!", at most 64 bytes (RFC 5321 §4.5.3.1.1).
func localPart(l string) bool {
	if len(l) > 64 {
		return false
	}
	for _, atom := range strings.Split(l, ".") {
		if atom == "" || strings.Trim(atom, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789#$&'*+/=?^_`{|}~-") != "" {
			return false
		}
	}
	return true
}

// domainName: two or more labels of ASCII letters, digits and inner
// hyphens, each at most 63 bytes, the last (the top-level domain)
// beginning with a letter (RFC 1035 §2.3.1, RFC 3696 §2), so that no
// spelling of an IPv4 address passes: inet_aton reads 0x7f.0x1 and
// 127.0.0.0x1 as 127.0.0.1 (review I, F2).
func domainName(d string) bool {
	labels := strings.Split(d, ".")
	if len(d) > 253 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' ||
			strings.Trim(l, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	c := labels[len(labels)-1][0] | 0x20
	return c >= 'a' && c <= 'z'
}

// headerText is s as one header line's text: controls (CR, LF, NUL…)
// become spaces and format characters (bidi overrides, zero-width) go;
// the library encodes what is not ASCII (RFC 2047).
func headerText(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		if unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return strings.TrimSpace(s)
}

// Build makes the message of outbox row id: from the configured sender,
// to m.To alone, with the stable Message-ID <id@domain> (a copy sent again
// after a crash between the send and its mark carries the same one, so a
// receiver can drop it), text and, when given, an HTML alternative.
func Build(id, from, domain string, m Message, date time.Time) (*gomail.Msg, error) {
	to, err := Address(m.To)
	if err != nil {
		return nil, fmt.Errorf("mail %s: recipient: %w", id, err)
	}
	// No library banner: it names a version and a URL, and says nothing
	// the receiver needs.
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(from); err != nil {
		return nil, fmt.Errorf("mail %s: sender: %w", id, err)
	}
	if err := msg.To(to); err != nil {
		return nil, fmt.Errorf("mail %s: recipient: %w", id, err)
	}
	msg.Subject(headerText(m.Subject))
	msg.SetMessageIDWithValue(id + "@" + domain)
	msg.SetDateWithValue(date)
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated") // RFC 3834: no auto-replies
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// Sealer seals a body for its outbox row (op/seal.Sealer).
type Sealer interface {
	Seal(ctx context.Context, aad string, plaintext []byte) ([]byte, error)
}

// NewID is a new outbox row's id: 128 random bits, the Message-ID's local
// part.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// Outbox makes the outbox row of m, a notification of kind for userID:
// its body sealed (it may hold a link's token), its recipient checked.
// The row is written by the store with the event's transaction
// (storage.WithMail).
func Outbox(ctx context.Context, sealer Sealer, userID, kind string, m Message, now time.Time) (storage.Mail, error) {
	to, err := Address(m.To)
	if err != nil {
		return storage.Mail{}, err
	}
	m.To = to
	id := NewID()
	plain, err := encode(m)
	if err != nil {
		return storage.Mail{}, err
	}
	body, err := sealer.Seal(ctx, AAD(id), plain)
	if err != nil {
		return storage.Mail{}, err
	}
	return storage.Mail{ID: id, UserID: userID, Kind: kind, To: to, Subject: headerText(m.Subject), Body: body, CreatedAt: now}, nil
}
