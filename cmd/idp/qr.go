package main

import (
	"io"
	"strings"

	"github.com/boombuler/barcode/qr"
)

// printQR draws text as a QR code with Unicode half blocks, two modules
// per character cell, dark on light with a quiet zone, so phones can scan
// it from a terminal.
func printQR(w io.Writer, text string) error {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return err
	}
	n := code.Bounds().Dx()
	const quiet = 2
	dark := func(x, y int) bool {
		x, y = x-quiet, y-quiet
		if x < 0 || y < 0 || x >= n || y >= n {
			return false
		}
		r, _, _, _ := code.At(x, y).RGBA()
		return r < 0x8000
	}
	var b strings.Builder
	size := n + 2*quiet
	for y := 0; y < size; y += 2 {
		for x := 0; x < size; x++ {
			top, bottom := dark(x, y), dark(x, y+1)
			switch {
			case !top && !bottom:
				b.WriteRune('█')
			case top && !bottom:
				b.WriteRune('▄')
			case !top && bottom:
				b.WriteRune('▀')
			default:
				b.WriteRune(' ')
			}
		}
		b.WriteByte('\n')
	}
	_, err = io.WriteString(w, b.String())
	return err
}
