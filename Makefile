# Build, run, test and measure the identity provider. `make demo` and
# `make test` are the two commands a newcomer needs.
SHELL    := /bin/bash
GO       ?= go
BIN      := bin
DB       ?= ./idp.db
ISSUER   ?= http://127.0.0.1:8080
LISTEN   ?= 127.0.0.1:8080
RACE_PKGS := ./storage/... ./op/... ./cmd/...

.PHONY: build run demo test test-race test-e2e bench fuzz cover lint tidy-check clean screenshots

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

# Run the provider on $(DB) (create users and clients with bin/idp).
run: build
	$(BIN)/idp serve --db $(DB) --issuer $(ISSUER) --listen $(LISTEN)

# Provider + example relying party on a fresh database in .demo/.
# Open http://127.0.0.1:9000/ and sign in with the printed credentials.
demo: build
	@rm -rf .demo && mkdir -p .demo
	@echo "Starting the provider on http://127.0.0.1:8080 and the demo app on http://127.0.0.1:9000 (Ctrl-C stops both)"
	@$(BIN)/idp serve --dev --db .demo/idp.db --issuer http://127.0.0.1:8080 --listen 127.0.0.1:8080 & idp=$$!; \
	  $(BIN)/demo-rp --issuer http://127.0.0.1:8080 --client-id demo --listen 127.0.0.1:9000 & rp=$$!; \
	  trap 'kill $$idp $$rp 2>/dev/null' INT TERM; \
	  wait -n $$idp $$rp; status=$$?; kill $$idp $$rp 2>/dev/null; wait; exit $$status

test: lint
	$(GO) test -race -count=1 $(RACE_PKGS)
	$(GO) test -count=1 ./e2e/...

# Regenerate the README's images (docs/screenshots/*.png) with the browser
# tests; needs chromium at /usr/bin/chromium. Every test's pages are also
# saved under testout/screenshots/<Test>/.
screenshots:
	@mkdir -p docs/screenshots
	IDP_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run 'TestBrowser' ./e2e/

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./storage/sqlite/ ./storage/postgres/ ./op/ ./op/mail/
	$(GO) run ./cmd/idp-bench

# Statement coverage of op/... and storage/... by the unit tests and the
# end-to-end suite together: the e2e binaries are built with -cover and
# write into the same directory as the unit tests. Prints the per-package
# figures, then `total: NN.N%` (statements of op/... and storage/...).
COVER_PKGS := github.com/totp-idp/idp/op/...,github.com/totp-idp/idp/storage/...
cover:
	@rm -rf testout/cover && mkdir -p testout/cover/unit testout/cover/e2e
	$(GO) test -count=1 -cover -coverpkg=$(COVER_PKGS) ./storage/... ./op/... ./cmd/... -args -test.gocoverdir=$(CURDIR)/testout/cover/unit >/dev/null
	IDP_E2E_COVERDIR=$(CURDIR)/testout/cover/e2e $(GO) test -count=1 ./e2e/... >/dev/null
	@$(GO) tool covdata percent -i=testout/cover/unit,testout/cover/e2e -pkg=$(COVER_PKGS)
	@$(GO) tool covdata textfmt -i=testout/cover/unit,testout/cover/e2e -pkg=$(COVER_PKGS) -o testout/cover/all.out
	@$(GO) tool cover -func=testout/cover/all.out | tail -1 | awk '{print "total: " $$NF}'

# Every fuzz target of an untrusted-input parser, each for FUZZ_EXECS
# inputs (a count, not a time: bounded however fast the machine is). A
# crash is saved under the package's testdata/fuzz/ and from then on runs
# as a regression test in make test. CI runs each briefly (.ci/run).
FUZZ_EXECS ?= 20000x
FUZZ_TARGETS := ./storage:FuzzCanonicalUsername ./op/totp:FuzzNormalizeCode ./op/totp:FuzzNormalizeRecoveryCode \
	./op/guard:FuzzDeviceCookie ./op/seal:FuzzOpenSealed ./op:FuzzPasswordForm ./cmd/idp:FuzzReadConfig
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t#*:}; \
	  echo "fuzz $$name ($$pkg, $(FUZZ_EXECS))"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZ_EXECS) -parallel 1 $$pkg; done

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck ./...; else echo "staticcheck not installed; skipped (go install honnef.co/go/tools/cmd/staticcheck@latest)"; fi

tidy-check:
	$(GO) mod tidy && git diff --exit-code go.mod go.sum

clean:
	rm -rf $(BIN) .demo testout
