package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// multiFlag is a repeatable string flag (--redirect-uri A --redirect-uri B).
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}

// envName is the environment variable that may set flag name.
func envName(name string) string {
	return "IDP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parseArgs parses flags that may stand before or after positional
// arguments, then fills unset flags from IDP_* environment variables and,
// when configFlag names a file, from that file ("name = value" lines).
// Precedence: command line, environment, config file, default.
func parseArgs(fs *flag.FlagSet, args []string, configFlag string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			// The flag package has printed it with the usage: a usage
			// error (exit status 2), not printed again (review B-F8).
			return nil, flagError{usageError{err.Error()}}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			positional = append(positional, rest[1:]...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var ferr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || ferr != nil {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if _, multi := f.Value.(*multiFlag); multi {
			for _, p := range strings.Split(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					ferr = errors.Join(ferr, f.Value.Set(p))
				}
			}
		} else if err := f.Value.Set(v); err != nil {
			ferr = fmt.Errorf("%s: %w", envName(f.Name), err)
		}
		set[f.Name] = true
	})
	if ferr != nil {
		return nil, ferr
	}
	if configFlag != "" {
		if path := fs.Lookup(configFlag).Value.String(); path != "" {
			if err := applyConfigFile(fs, path, set); err != nil {
				return nil, err
			}
		}
	}
	return positional, nil
}

func applyConfigFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	return readConfig(fs, f, path, set)
}

func readConfig(fs *flag.FlagSet, r io.Reader, path string, set map[string]bool) error {
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s:%d: expected name = value", path, n)
		}
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
		f := fs.Lookup(name)
		if f == nil || name == "config" {
			return fmt.Errorf("%s:%d: unknown setting %q", path, n, name)
		}
		if set[name] {
			continue
		}
		if err := f.Value.Set(value); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", path, n, name, err)
		}
	}
	if err := sc.Err(); err != nil {
		// A line over 64 KiB: say where.
		return fmt.Errorf("%s:%d: %w", path, n+1, err)
	}
	return nil
}

// subcommand splits "idp GROUP SUB …" and refuses an unknown SUB before
// anything is opened or created (a typo must not leave a database behind).
func subcommand(group string, args []string, known ...string) (string, []string, error) {
	if len(args) == 0 || !slices.Contains(known, args[0]) {
		list := strings.Join(known[:len(known)-1], ", ") + " or " + known[len(known)-1]
		if len(args) == 0 {
			return "", nil, usageError{fmt.Sprintf("idp %s: expected %s", group, list)}
		}
		return "", nil, usageError{fmt.Sprintf("idp %s: unknown subcommand %q (expected %s)", group, args[0], list)}
	}
	return args[0], args[1:], nil
}
