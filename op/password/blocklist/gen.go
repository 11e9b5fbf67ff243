//go:build ignore

// gen writes common.txt.gz from zxcvbn's ranked password list (the
// "passwords.txt" of github.com/trustelem/zxcvbn v1.0.1, data/, MIT; a
// port of Dropbox zxcvbn 4.4.2, whose list ranks the passwords of Mark
// Burnett's 10 million password corpus). Each entry is folded as Check
// folds a candidate (NFKC, lower case); duplicates go.
//
//	go run gen.go $(go env GOMODCACHE)/github.com/trustelem/zxcvbn@v1.0.1/data/passwords.txt
package main

import (
	"bufio"
	"compress/gzip"
	"log"
	"os"
	"slices"
	"strings"

	"golang.org/x/text/unicode/norm"
)

func main() {
	in, err := os.Open(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	defer in.Close()
	var words []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		words = append(words, strings.ToLower(norm.NFKC.String(f[0])))
	}
	if err := sc.Err(); err != nil {
		log.Fatal(err)
	}
	slices.Sort(words)
	words = slices.Compact(words)
	out, err := os.Create("common.txt.gz")
	if err != nil {
		log.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.BestCompression)
	if _, err := zw.Write([]byte(strings.Join(words, "\n") + "\n")); err != nil {
		log.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	if err := out.Close(); err != nil {
		log.Fatal(err)
	}
	log.Printf("%d passwords", len(words))
}
