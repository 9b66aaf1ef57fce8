# The two commands: `make demo` runs the main job on a default local database,
# `make test` runs the whole test suite. Each installs what it needs first.

SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the build and the tests need.
DEPS := liburing-dev libxxhash-dev libedit-dev liblz4-dev libzstd-dev pkg-config
DEMO_DB ?= demo.db

.PHONY: deps build demo test docs bench-pagestore clean

deps:
	@missing=""; for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build -c release --product kvctl

# A put/get/scan session on ./demo.db through kvctl, each command echoed before it runs.
KVCTL := .build/release/kvctl
demo: build
	@set -e; rm -rf $(DEMO_DB); run() { echo "\$$ kvctl $$*"; $(KVCTL) "$$@"; }; \
	run $(DEMO_DB) put greeting "hello, world"; \
	run $(DEMO_DB) put user:1 alice; \
	run $(DEMO_DB) put user:2 bob; \
	run $(DEMO_DB) put user:3 carol; \
	run $(DEMO_DB) get greeting; \
	run $(DEMO_DB) del user:2; \
	run $(DEMO_DB) scan; \
	run $(DEMO_DB) scan --prefix user: --reverse; \
	run $(DEMO_DB) stats

# Builds everything (failing on any warning in this project's own code), runs every
# test target, then builds (failing on any warning in its code, Swift 6 strict
# concurrency) and runs the example package that uses KVEngine as a dependency (so the
# public API cannot break unnoticed). The suites are XCTest; Swift Testing's runner is off so that the
# run ends on XCTest's summary line (switch it on when a Swift Testing test is added).
test: deps
	@$(SWIFT) build --build-tests > .build-test.log 2>&1; status=$$?; cat .build-test.log; \
		if [ $$status != 0 ]; then rm -f .build-test.log; exit $$status; fi
	@if grep -E '^(/|\./)?[^ ]*(Sources|Tests|Examples)/[^ ]*: warning:' .build-test.log | grep -v '/.build/'; then \
		echo "error: the build has warnings (see above)"; rm -f .build-test.log; exit 1; fi
	@rm -f .build-test.log
	@$(SWIFT) test --skip-build --disable-swift-testing 2>&1 | tee .build/test.log; \
		grep -q "^Test Suite 'All tests' passed" .build/test.log || { echo "error: tests failed"; exit 1; }
	@cd Examples/NoteStore && $(SWIFT) build > .build-example.log 2>&1; status=$$?; \
		if [ $$status != 0 ]; then cat .build-example.log; rm -f .build-example.log; exit $$status; fi; \
		if grep -E '^[^ ]*Examples/NoteStore/Sources/[^ ]*: warning:' .build-example.log; then \
			echo "error: the example has warnings (see above)"; rm -f .build-example.log; exit 1; fi; \
		rm -f .build-example.log
	cd Examples/NoteStore && $(SWIFT) run -q --skip-build NoteStore
	@awk '/Executed [0-9]+ tests?, with/ { line = $$0 } END { \
		match(line, /Executed [0-9]+/); n = substr(line, RSTART + 9, RLENGTH - 9); \
		s = 0; if (match(line, /[0-9]+ tests? skipped/)) { s = substr(line, RSTART, RLENGTH) + 0 } \
		match(line, /[0-9]+ failures?/); f = substr(line, RSTART, RLENGTH) + 0; \
		printf "tests: %d passed, %d failed, %d skipped\n", n - s - f, f, s }' .build/test.log

# The DocC catalogs of KVEngine and PageStore (swift-docc-plugin), as static sites in
# .build/docs; fails on any documentation warning.
docs: deps
	@mkdir -p .build/docs; for target in KVEngine PageStore; do \
		$(SWIFT) package --allow-writing-to-directory .build/docs generate-documentation \
			--target $$target --output-path .build/docs/$$target --warnings-as-errors \
			--transform-for-static-hosting || exit 1; \
	done

bench-pagestore: deps
	scripts/bench-pagestore.sh

clean:
	rm -rf .build $(DEMO_DB)
