// Package blocklist holds the common and breached passwords that the
// password rules refuse (NIST SP 800-63B-4 §3.1.1.2: "passwords obtained
// from previous breach corpuses" and "commonly used" ones). The list is
// zxcvbn's ranked list of the most common passwords of Mark Burnett's 10
// million password corpus, 47 023 entries (gen.go; MIT, LICENSE-zxcvbn.txt),
// folded to NFKC lower case, shipped in the binary and read on first use.
package blocklist

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"io"
	"slices"
	"strings"
	"sync"
)

//go:embed common.txt.gz
var compressed []byte

// load decompresses the sorted list once; the entries share one string.
var load = sync.OnceValue(func() []string {
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		panic("blocklist: embedded list unreadable: " + err.Error())
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		panic("blocklist: embedded list unreadable: " + err.Error())
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
})

// Contains reports whether folded (NFKC, lower case: what gen.go stored)
// is on the list.
func Contains(folded string) bool {
	_, found := slices.BinarySearch(load(), folded)
	return found
}

// Len is the number of entries.
func Len() int { return len(load()) }
