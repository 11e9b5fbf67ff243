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
// control, format or line/paragraph separator characters.
var ErrBadUsername = errors.New("invalid username")

// CanonicalUsername maps every spelling of a username to one key, so that
// "Alice", "ALICE ", " alice" and full-width "ａｌｉｃｅ" hit one account
// and therefore one failure counter (docs/THREAT-MODEL.md rule 1): Unicode NFKC,
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
	for i, r := range c {
		if invisible(r) || r == unicode.ReplacementChar || i == 0 && unicode.Is(unicode.M, r) {
			return "", ErrBadUsername
		}
	}
	return c, nil
}

// invisible reports characters a username must not contain: controls (Cc),
// format characters (Cf: bidi overrides such as U+202E, zero-width spaces
// and joiners, soft hyphens) and line and paragraph separators (Zl, Zp).
// They make one name look like another or reorder and break the lines an
// operator reads; PRECIS disallows them in identifiers such as usernames
// (RFC 8264 §4.2, RFC 8265 §3).
//
// Some letters and symbols render as nothing at all though Unicode does
// not class them as format characters: the Hangul fillers and the blank
// braille pattern. They are refused too, as are combining marks on their
// own at the start of a name, which attach to whatever precedes it in a
// listing.
func invisible(r rune) bool {
	switch r {
	case '\u115f', '\u1160', '\u3164', '\uffa0', '\u2800':
		return true
	}
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// Printable reports whether s is valid UTF-8 without the characters a
// username refuses anywhere (invisible): control, format (bidi overrides,
// zero-width), line and paragraph separators and the blank letters. The
// profile's name and address are checked with it too (op/admin).
func Printable(s string) bool {
	for _, r := range s {
		if invisible(r) || r == unicode.ReplacementChar {
			return false
		}
	}
	return utf8.ValidString(s)
}
