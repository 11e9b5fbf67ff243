package main

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// printable returns s for a terminal: as is when every character is
// printable, otherwise Go-quoted with \u escapes, so that a stored value
// with a control character, a bidi override (U+202E) or a line separator
// (U+2028) can neither forge a line nor reorder what the operator reads.
// A value that starts with a quote is quoted too, so that a quoted form is
// never ambiguous.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.HasPrefix(s, `"`) || strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
