// Package templates holds the login UI's HTML templates and stylesheet,
// embedded in the binary.
package templates

import "embed"

// FS holds every page template (*.html), the stylesheet (style.css) and
// the message catalogues (messages/LANG.json).
//
//go:embed *.html style.css messages/*.json
var FS embed.FS
