// Package login is the sign-in UI between /authorize and the library's
// callback: the password page, the TOTP page, enrollment of a new
// authenticator and the recovery-code page (docs/DESIGN.md, "The login
// state machine").
//
// An auth request moves through the stages of storage.Stage*, each move
// one storage update guarded by the stage before it, the user and the
// expiry:
//
//	          password (passwordStep)          TOTP code (codeStep)
//	created ─────────────────────────▶ password_ok ───────────────────▶ done
//	   │                                   │  ▲          recovery code    ▲
//	   │ live SSO session                  │  └── (recoveryStep) ─────────┤
//	   │ (loginPage)                       │                              │
//	   └───────────────────────────────────┼──────────────────────────────┤
//	                                       │ first code of a new          │
//	                                       ▼ authenticator (enrollStep)   │
//	                                   enrolled ──────────────────────────┘
//	                                             TOTP code of a later step
//	                                             (codeStep)
//
// Only a second factor, or a session opened by one, reaches done; only
// done with an SSO session gets a code at the callback
// (docs/THREAT-MODEL.md rule 7). Every page and form loads its request
// through boundFlow, which checks the browser binding set at /authorize;
// every form also carries the flow's token (loadFlow, R-W1), and each
// completed step renews the binding (R-W2). Each attempt is claimed from
// the guard before it is verified (op/guard). Handlers return a
// *pages.Error instead of answering a failure (pages.Handle).
//
// Handler's dependencies are explicit (Deps); op builds it and mounts it
// (Mount) next to the protocol library's router.
package login
