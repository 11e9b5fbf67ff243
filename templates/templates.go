// Package templates holds the login UI's HTML templates and stylesheet,
// embedded in the binary.
package templates

import "embed"

// FS holds every page template (*.html) and the stylesheet (style.css).
//
//go:embed *.html style.css
var FS embed.FS
