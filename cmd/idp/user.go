package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/totp-idp/idp/op"
	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
)

func (e *env) user(ctx context.Context, args []string) (err error) {
	sub, args, err := subcommand("user", args, "add", "list", "show", "unlock", "reset-totp", "recovery-codes", "revoke-sessions",
		"delete", "set-password", "disable", "enable", "update", "sessions")
	if err != nil {
		return err
	}
	fs, db := e.newFlags("user " + sub)
	var (
		email, name, product, keyFile string
		issuer                        string
		passwordStdin, asJSON         bool
		emailVerified                 bool
		enrollAtLogin, allowWeak      bool
		minLength                     int
	)
	if sub == "add" {
		fs.StringVar(&email, "email", "", "e-mail address")
		fs.StringVar(&name, "name", "", "display name")
		fs.BoolVar(&emailVerified, "email-verified", false, "the e-mail address is known to be the user's (email_verified claim)")
		fs.BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
		fs.BoolVar(&enrollAtLogin, "enroll-at-login", false, "no authenticator now: the user sets one up at first login, after the password")
		fs.StringVar(&product, "product-name", "TOTP IdP", "issuer name shown in authenticator apps")
		fs.StringVar(&keyFile, "secret-key-file", "", "secret key that seals TOTP secrets (default: DB.key if it exists)")
	}
	var mustChange bool
	if sub == "add" || sub == "set-password" {
		fs.BoolVar(&allowWeak, "allow-weak", false, "skip the password rules but the length bounds (migrating existing accounts; audited)")
		fs.IntVar(&minLength, "password-min-length", password.DefaultMinLength, "the shortest password accepted, in characters (NIST SP 800-63B-4 §3.1.1.2)")
	}
	if sub == "set-password" {
		fs.BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
		fs.BoolVar(&mustChange, "must-change", false, "the user chooses a new password after both factors of their next sign-in, before any code")
	}
	if sub == "update" {
		fs.StringVar(&email, "email", "", "new e-mail address (\"\" clears it)")
		fs.StringVar(&name, "name", "", "new display name")
		fs.BoolVar(&emailVerified, "email-verified", false, "the e-mail address is known to be the user's (--email-verified=false clears it)")
		fs.StringVar(&issuer, "issuer", "", "the provider's issuer URL (serve's --issuer): a new, unverified address is mailed its verification link")
	}
	// The commands whose change its owner is told of (issue 13, item 4):
	// the notice is sealed in the outbox with the secret key, and a server
	// with mail configured sends it.
	notifies := sub == "set-password" || sub == "reset-totp" || sub == "recovery-codes" || sub == "update"
	if notifies {
		fs.StringVar(&product, "product-name", "TOTP IdP", "the provider's name in the notice mailed to the user (serve's --product-name)")
		fs.StringVar(&keyFile, "secret-key-file", "", "secret key that seals the notice mailed to the user (default: DB.key if it exists)")
	}
	var clientID string
	if sub == "revoke-sessions" {
		fs.StringVar(&clientID, "client", "", "revoke only the tokens issued to this client (SSO sessions are kept)")
	}
	switch sub {
	case "add", "list", "show", "set-password", "disable", "enable", "update", "sessions", "unlock", "reset-totp", "recovery-codes",
		"delete", "revoke-sessions":
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	}
	pos, err := parseArgs(fs, args, "")
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["password-min-length"] && (minLength < password.DefaultMinLength || minLength > 64) {
		// The bounds of serve's flag: below 8 is --allow-weak's business,
		// and that is audited (review of issue 12, F3).
		return usageError{fmt.Sprintf("--password-min-length: must be between %d and 64 characters, not %d (NIST SP 800-63B-4 §3.1.1.2; --allow-weak skips the rules, audited)", password.DefaultMinLength, minLength)}
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	var sealer *seal.Sealer
	if sub == "add" {
		// The secret key seals the TOTP secret and opens the key of the
		// name's unknown-name counter, which the account takes over.
		if sealer, _, err = loadSealer(keyFile, *db, false); err != nil {
			return err
		}
		if err := sealer.Bind(ctx, st); err != nil {
			return err
		}
	}
	adm, err := newAdmin(st, sealer, product)
	if err != nil {
		return err
	}
	if notifies {
		if adm.Notify, err = e.notifier(ctx, st, keyFile, *db, product); err != nil {
			return err
		}
		adm.Issuer = issuer
	}
	// The output is written; an action whose audit row failed still
	// exits non-zero (review of issue 12, B-F2).
	defer unaudited(adm, &err)
	adm.Passwords = password.Policy{MinLength: minLength}
	switch sub {
	case "add":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		pw, err := e.readPassword(passwordStdin)
		if err != nil {
			return err
		}
		u, err := adm.AddUser(ctx, admin.NewUser{Username: pos[0], Name: name, Email: email, EmailVerified: emailVerified, Password: pw,
			SkipTOTP: enrollAtLogin, AllowWeak: allowWeak})
		if errors.Is(err, storage.ErrConflict) {
			return fmt.Errorf("user %q already exists", pos[0])
		}
		if weak := (*password.WeakError)(nil); errors.As(err, &weak) {
			return fmt.Errorf("password refused: %v (NIST SP 800-63B-4 §3.1.1.2; --allow-weak skips the rules for a migration)", weak)
		}
		if err != nil {
			return err
		}
		if asJSON {
			out := map[string]any{"id": u.ID, "username": u.Username}
			if u.TOTPURI != "" {
				out["totp_uri"] = u.TOTPURI
			}
			return e.changed(adm, out)
		}
		if enrollAtLogin {
			fmt.Fprintf(e.stdout, "Created user %s (id %s). They set up an authenticator app at their first sign-in, within the server's --enroll-within (default %s) from now.\n", printable(u.Username), u.ID, op.DefaultEnrollWithin)
			return nil
		}
		fmt.Fprintf(e.stdout, "Created user %s (id %s).\n\nScan this code with an authenticator app, or enter the URI by hand:\n\n", printable(u.Username), u.ID)
		if err := printQR(e.stdout, u.TOTPURI); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "\n%s\n", u.TOTPURI)
		return nil
	case "list":
		if err := needArgs(pos, 0, "no arguments"); err != nil {
			return err
		}
		users, err := st.ListUsers(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			type row struct {
				ID       string `json:"id"`
				Username string `json:"username"`
				Name     string `json:"name,omitempty"`
				Email    string `json:"email,omitempty"`
			}
			out := []row{}
			for _, u := range users {
				out = append(out, row{u.ID, u.Username, u.Name, u.Email})
			}
			return json.NewEncoder(e.stdout).Encode(out)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tID\tNAME\tEMAIL")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", printable(u.Username), printable(u.ID), printable(u.Name), printable(u.Email))
		}
		return tw.Flush()
	case "show":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		u, err := adm.UserByName(ctx, pos[0])
		if err != nil {
			return notFound("user", pos[0], err)
		}
		return e.showUser(ctx, st, u, asJSON)
	case "unlock":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		u, err := adm.Unlock(ctx, pos[0])
		if err != nil {
			return notFound("user", pos[0], err)
		}
		if asJSON {
			return e.changed(adm, map[string]any{"username": u.Username, "unlocked": true})
		}
		fmt.Fprintf(e.stdout, "Unlocked %s: failure counts and locks cleared.\n", printable(u.Username))
		return nil
	case "reset-totp":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		u, ended, err := adm.ResetTOTP(ctx, pos[0])
		if err != nil {
			return notFound("user", pos[0], err)
		}
		if asJSON {
			return e.changed(adm, map[string]any{"username": u.Username, "totp_reset": true, "ended": ended})
		}
		fmt.Fprintf(e.stdout, "Removed any authenticator and recovery codes of %s. They set up a new authenticator at their next sign-in, after the password, within the server's --enroll-within (default %s) from now.\n", printable(u.Username), op.DefaultEnrollWithin)
		fmt.Fprintf(e.stdout, "Signed out everywhere: %s.\n", admin.EndedText(ended))
		return nil
	case "recovery-codes":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		u, codes, ended, err := adm.RegenerateRecoveryCodes(ctx, pos[0])
		if errors.Is(err, admin.ErrNoAuthenticator) {
			return fmt.Errorf("%s has no authenticator yet: recovery codes are issued when they set one up at sign-in", pos[0])
		}
		if err != nil {
			return notFound("user", pos[0], err)
		}
		if asJSON {
			return e.changed(adm, map[string]any{"username": u.Username, "recovery_codes": codes, "ended": ended})
		}
		fmt.Fprintf(e.stdout, "Signed %s out everywhere, in case the old codes are known: %s.\n", printable(u.Username), admin.EndedText(ended))
		fmt.Fprintf(e.stdout, "New recovery codes for %s (the old ones no longer work). Each works once; give them to the user now, they are not stored:\n\n", printable(u.Username))
		for _, c := range codes {
			fmt.Fprintln(e.stdout, c)
		}
		return nil
	case "delete":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		u, ended, err := adm.DeleteUser(ctx, pos[0])
		if err != nil {
			return notFound("user", pos[0], err)
		}
		if asJSON {
			return e.changed(adm, map[string]any{"username": u.Username, "deleted": true, "ended": ended})
		}
		fmt.Fprintf(e.stdout, "Deleted %s: %s.\n", printable(u.Username), admin.EndedText(ended))
		return nil
	case "revoke-sessions":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		u, ended, err := adm.RevokeSessions(ctx, pos[0], clientID)
		if err != nil {
			return notFound("user", pos[0], err)
		}
		if asJSON {
			return e.changed(adm, map[string]any{"username": u.Username, "client": clientID, "ended": ended})
		}
		where := "everywhere"
		if clientID != "" {
			where = "at client " + clientID
		}
		fmt.Fprintf(e.stdout, "Signed %s out %s: %s.\n", printable(u.Username), where, admin.EndedText(ended))
		return nil
	case "set-password":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		pw, err := e.readPassword(passwordStdin)
		if err != nil {
			return err
		}
		u, ended, err := adm.SetPassword(ctx, pos[0], pw, mustChange, allowWeak)
		if weak := (*password.WeakError)(nil); errors.As(err, &weak) {
			return fmt.Errorf("password refused: %v (NIST SP 800-63B-4 §3.1.1.2; --allow-weak skips the rules for a migration)", weak)
		}
		if err != nil {
			return notFound("user", pos[0], err)
		}
		if asJSON {
			return e.changed(adm, map[string]any{"username": u.Username, "must_change": mustChange, "ended": ended})
		}
		fmt.Fprintf(e.stdout, "New password set for %s; signed out everywhere: %s.\n", printable(u.Username), admin.EndedText(ended))
		if mustChange {
			fmt.Fprintln(e.stdout, "They choose their own password after both factors of their next sign-in, before any application gets a code.")
		}
		return nil
	case "disable", "enable":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		u, ended, err := adm.SetDisabled(ctx, pos[0], sub == "disable")
		if err != nil {
			return notFound("user", pos[0], err)
		}
		if asJSON {
			return e.changed(adm, map[string]any{"username": u.Username, "disabled": sub == "disable", "ended": ended})
		}
		if sub == "disable" {
			fmt.Fprintf(e.stdout, "Disabled %s; signed out everywhere: %s. Until `idp user enable`, a sign-in that proves both factors is told the account is disabled and gets no code.\n",
				printable(u.Username), admin.EndedText(ended))
		} else {
			fmt.Fprintf(e.stdout, "Enabled %s.\n", printable(u.Username))
		}
		return nil
	case "update":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		var up storage.UserUpdate
		if set["email"] {
			up.Email = &email
		}
		if set["name"] {
			up.Name = &name
		}
		if set["email-verified"] {
			up.EmailVerified = &emailVerified
		}
		if up == (storage.UserUpdate{}) {
			return usageError{"idp user update: give at least one of --email, --name, --email-verified"}
		}
		u, linkSent, err := adm.UpdateUser(ctx, pos[0], up)
		if err != nil {
			return notFound("user", pos[0], err)
		}
		if asJSON {
			return e.changed(adm, map[string]any{"username": u.Username, "name": u.Name, "email": u.Email,
				"email_verified": u.EmailVerified, "verification_link_sent": linkSent})
		}
		fmt.Fprintf(e.stdout, "Updated %s: name %s, e-mail %s (verified: %t).\n", printable(u.Username), printable(u.Name), printable(u.Email), u.EmailVerified)
		if linkSent {
			fmt.Fprintln(e.stdout, "A verification link was queued for the new address.")
		} else if set["email"] && u.Email != "" && !u.EmailVerified {
			fmt.Fprintln(e.stdout, "No verification link was sent (give --issuer, or the user asks for one on the account page).")
		}
		return nil
	case "sessions":
		if err := needArgs(pos, 1, "USERNAME"); err != nil {
			return err
		}
		u, si, err := adm.UserSessions(ctx, pos[0], time.Now().UTC())
		if err != nil {
			return notFound("user", pos[0], err)
		}
		return e.printSessions(u, si, asJSON)
	default:
		return usageError{fmt.Sprintf("idp user: unknown subcommand %q", sub)}
	}
}

// printSessions lists what the user is signed in with: SSO sessions and
// remembered devices, by when and from where; never a cookie or its hash.
func (e *env) printSessions(u storage.User, si admin.SignedIn, asJSON bool) error {
	type sessionView struct {
		Created   string `json:"created"`
		LastSeen  string `json:"last_seen"`
		Expires   string `json:"expires"`
		Verified  string `json:"second_factor_at,omitempty"`
		ClientIP  string `json:"client_ip,omitempty"`
		UserAgent string `json:"user_agent,omitempty"`
	}
	type deviceView struct {
		Created   string `json:"created"`
		LastUsed  string `json:"last_used"`
		Expires   string `json:"expires"`
		UserAgent string `json:"user_agent,omitempty"`
	}
	out := struct {
		Username string        `json:"username"`
		Sessions []sessionView `json:"sessions"`
		Devices  []deviceView  `json:"devices"`
	}{Username: u.Username, Sessions: []sessionView{}, Devices: []deviceView{}}
	for _, s := range si.Sessions {
		out.Sessions = append(out.Sessions, sessionView{ts(s.CreatedAt), ts(s.LastSeenAt), ts(s.ExpiresAt), ts(s.VerifiedAt), s.ClientIP, s.UserAgent})
	}
	for _, d := range si.Devices {
		out.Devices = append(out.Devices, deviceView{ts(d.CreatedAt), ts(d.LastUsedAt), ts(d.ExpiresAt), d.UserAgent})
	}
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(out)
	}
	fmt.Fprintf(e.stdout, "%s: %d session(s), %d remembered device(s)\n", printable(u.Username), len(out.Sessions), len(out.Devices))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if len(out.Sessions) > 0 {
		fmt.Fprintln(tw, "SESSION CREATED\tLAST SEEN\tEXPIRES\tFROM\tUSER AGENT")
		for _, s := range out.Sessions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Created, s.LastSeen, s.Expires, printable(s.ClientIP), printable(s.UserAgent))
		}
	}
	if len(out.Devices) > 0 {
		fmt.Fprintln(tw, "DEVICE CREATED\tLAST USED\tEXPIRES\t\tUSER AGENT")
		for _, d := range out.Devices {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t%s\n", d.Created, d.LastUsed, d.Expires, printable(d.UserAgent))
		}
	}
	return tw.Flush()
}

func notFound(kind, name string, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%s %q not found", kind, name)
	}
	return err
}

func (e *env) showUser(ctx context.Context, st storage.Store, u storage.User, asJSON bool) error {
	states, err := st.AttemptStates(ctx, u.ID)
	if err != nil {
		return err
	}
	cred, terr := st.TOTPByUser(ctx, u.ID)
	hasTOTP := terr == nil && cred.Confirmed
	now := time.Now().UTC()
	type factorView struct {
		Factor      string `json:"factor"`
		Failures    int    `json:"failures"`
		Locked      bool   `json:"locked"`
		LockedUntil string `json:"locked_until,omitempty"`
		HardLocked  bool   `json:"hard_locked"`
		LastFailure string `json:"last_failure,omitempty"`
		LastSuccess string `json:"last_success,omitempty"`
		// The failure budget (TOTP): failures in its bucket as of
		// BudgetAt, before the server's --totp-budget-window leaks them.
		BudgetUsed  float64 `json:"budget_used"`
		BudgetAt    string  `json:"budget_at,omitempty"`
		BudgetSpent bool    `json:"budget_spent"`
	}
	devices, err := st.Devices(ctx, u.ID, now)
	if err != nil {
		return err
	}
	type deviceView struct {
		Created     string `json:"created"`
		LastUsed    string `json:"last_used"`
		Expires     string `json:"expires"`
		UserAgent   string `json:"user_agent"`
		Failures    int    `json:"failures"`
		LockedUntil string `json:"locked_until,omitempty"`
	}
	dv := []deviceView{}
	for _, d := range devices {
		v := deviceView{Created: ts(d.CreatedAt), LastUsed: ts(d.LastUsedAt), Expires: ts(d.ExpiresAt),
			UserAgent: d.UserAgent, Failures: d.Failures}
		if d.LockedUntil.After(now) {
			v.LockedUntil = ts(d.LockedUntil)
		}
		dv = append(dv, v)
	}
	var fv []factorView
	for _, s := range states {
		fv = append(fv, factorView{
			Factor: string(s.Factor), Failures: s.Failures,
			Locked:      s.HardLocked || s.BudgetSpent || s.LockedUntil.After(now),
			LockedUntil: ts(s.LockedUntil), HardLocked: s.HardLocked || s.BudgetSpent,
			LastFailure: ts(s.LastFailureAt), LastSuccess: ts(s.LastSuccessAt),
			BudgetUsed: s.BudgetLevel, BudgetAt: ts(s.BudgetAt), BudgetSpent: s.BudgetSpent,
		})
	}
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{
			"id": u.ID, "username": u.Username, "name": u.Name, "email": u.Email,
			"created_at": ts(u.CreatedAt), "totp": hasTOTP, "enroll_pending_since": ts(u.EnrollPendingSince), "factors": fv,
			"devices": dv, "email_verified": u.EmailVerified, "disabled_at": ts(u.DisabledAt),
			"must_change_password": u.MustChangePassword, "password_changed_at": ts(u.PasswordChangedAt),
		})
	}
	fmt.Fprintf(e.stdout, "username:   %s\nid:         %s\nname:       %s\nemail:      %s\ncreated:    %s\ntotp:       %t\n",
		printable(u.Username), printable(u.ID), printable(u.Name), printable(u.Email), ts(u.CreatedAt), hasTOTP)
	if !u.DisabledAt.IsZero() {
		fmt.Fprintf(e.stdout, "disabled:   since %s (idp user enable)\n", ts(u.DisabledAt))
	}
	if u.MustChangePassword {
		fmt.Fprintln(e.stdout, "password:   must be changed at the next sign-in")
	}
	if !u.PasswordChangedAt.IsZero() {
		fmt.Fprintf(e.stdout, "password changed: %s\n", ts(u.PasswordChangedAt))
	}
	switch {
	case hasTOTP:
	case u.EnrollPendingSince.IsZero():
		fmt.Fprintln(e.stdout, "enrollment:  not open (no start recorded); idp user reset-totp opens it")
	default:
		fmt.Fprintf(e.stdout, "enrollment:  waiting since %s (the server's --enroll-within counts from then)\n", ts(u.EnrollPendingSince))
	}
	if len(fv) == 0 {
		fmt.Fprintln(e.stdout, "attempts:   none recorded")
	}
	for _, f := range fv {
		state := "not locked"
		switch {
		case f.BudgetSpent:
			state = "LOCKED: failure budget spent; until an operator unlocks (idp user unlock)"
		case f.HardLocked:
			state = "LOCKED until an operator unlocks (idp user unlock)"
		case f.Locked:
			state = "LOCKED until " + f.LockedUntil
		}
		fmt.Fprintf(e.stdout, "%-10s  failures %d, %s; last failure %s; last success %s\n",
			f.Factor+":", f.Failures, state, orNone(f.LastFailure), orNone(f.LastSuccess))
		if f.BudgetAt != "" {
			fmt.Fprintf(e.stdout, "%-10s  failure budget: %.1f used as of %s (successes do not refill it; it leaks by time)\n", "", f.BudgetUsed, f.BudgetAt)
		}
		if f.Factor == string(storage.FactorPassword) {
			fmt.Fprintf(e.stdout, "%-10s  (the shared counter of browsers not remembered; it forgets one failure per --password-decay)\n", "")
		}
	}
	fmt.Fprintf(e.stdout, "devices:    %d remembered (their password attempts count on their own counters)\n", len(dv))
	for _, d := range dv {
		state := ""
		if d.LockedUntil != "" {
			state = ", LOCKED until " + d.LockedUntil
		}
		fmt.Fprintf(e.stdout, "  - since %s, last sign-in %s, expires %s, failures %d%s; %s\n",
			d.Created, d.LastUsed, d.Expires, d.Failures, state, printable(d.UserAgent))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "never"
	}
	return s
}

// readPassword reads the new user's password: one line from standard input
// with --password-stdin, otherwise twice from the terminal without echo.
func (e *env) readPassword(fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(e.stdin, password.MaxBytes+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		pw := strings.TrimRight(line, "\r\n")
		if len(pw) > password.MaxBytes {
			return "", password.ErrTooLong
		}
		if pw == "" {
			return "", errors.New("no password on standard input")
		}
		return pw, nil
	}
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usageError{"standard input is not a terminal: use --password-stdin"}
	}
	fmt.Fprint(e.stderr, "Password: ")
	a, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(e.stderr, "Repeat password: ")
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", errors.New("the passwords do not match")
	}
	return string(a), nil
}

// ts is t in RFC 3339, UTC; "" for the zero time.
func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// changed prints an operator change's JSON answer; when its audit row
// could not be written, "unaudited" says why (and the exit status is 3;
// review of issue 12, C-F4). The field is absent otherwise, so the
// answers keep their shape.
func (e *env) changed(adm *admin.Admin, out map[string]any) error {
	if err := adm.Unaudited(); err != nil {
		out["unaudited"] = err.Error()
	}
	return json.NewEncoder(e.stdout).Encode(out)
}
