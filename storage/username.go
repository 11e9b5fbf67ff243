package storage

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxUsernameLen bounds a canonical username in bytes.
const MaxUsernameLen = 128

// ErrBadUsername: the username is empty, too long, not UTF-8 or contains
// control characters.
var ErrBadUsername = errors.New("invalid username")

// CanonicalUsername maps every spelling of a username to one key, so that
// "Alice", "ALICE ", " alice" and full-width "ａｌｉｃｅ" hit one account
// and therefore one failure counter (threat model rule 1): Unicode NFKC,
// then lower case, then surrounding white space trimmed.
func CanonicalUsername(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrBadUsername
	}
	if len(s) > 4*MaxUsernameLen {
		return "", ErrBadUsername
	}
	c := strings.TrimSpace(strings.ToLower(norm.NFKC.String(s)))
	// Lower-casing can produce a form that NFKC changes again.
	c = norm.NFKC.String(c)
	if c == "" || len(c) > MaxUsernameLen {
		return "", ErrBadUsername
	}
	for _, r := range c {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return "", ErrBadUsername
		}
	}
	return c, nil
}
