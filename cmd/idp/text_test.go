package main

import "testing"

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"alice":             "alice",
		"zoë 日本":            "zoë 日本",
		"a\nb":              `"a\nb"`,
		"tab\there":         `"tab\there"`,
		"evil\u202egnp.exe": `"evil\u202egnp.exe"`,
		"line\u2028two":     `"line\u2028two"`,
		"para\u2029":        `"para\u2029"`,
		"zero\u200bwidth":   `"zero\u200bwidth"`,
		"nbsp\u00a0":        `"nbsp\u00a0"`,
		"\x1b[31mred":       `"\x1b[31mred"`,
		"\xff":              `"\xff"`,
		`"quoted"`:          `"\"quoted\""`,
		"":                  "",
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %s, want %s", in, got, want)
		}
	}
}
