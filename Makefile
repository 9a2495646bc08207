# SantéGuard — two commands: `make demo` and `make test`.
# Everything installs into .venv; nothing is installed system-wide.

SHELL  := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all demo test lint typecheck pytest bench bench-directory postgres dovecot chromium clean help

all: test

help:
	@echo "make demo             - start a throwaway Synapse + SantéGuard (SQLite) and show what it enforces"
	@echo "                        and the mail bridge against a local MSSanté-like relay and Dovecot (installed if missing);"
	@echo "                        its working directory is deleted when it stops (kept if it fails)"
	@echo "                        (make demo DEMO_LANG=en for English, DEMO_ARGS=--keep to keep the directory)"
	@echo "make test             - install, start PostgreSQL if needed, run ruff, mypy and the whole suite"
	@echo "make bench            - transaction ingest benchmark (SQLite and PostgreSQL vs a bare handler)"
	@echo "make bench-directory  - Annuaire Santé extract import benchmark (2 million lines)"
	@echo "make bench-gate       - gate benchmark: callback latency, Synapse join cost, backstop reaction"
	@echo "make bench-unverify   - \`!sg unverify\` to removal from 50 protected rooms (SQLite, PostgreSQL)"
	@echo "make bench-mail       - mail bridge: Matrix to SMTP latency and throughput, IMAP to room (~5 min)"
	@echo "make bench-audit      - audit log: appends/s (SQLite, PostgreSQL) and verifying 1 million entries"
	@echo "make reliability      - the whole suite at full size (SANTEGUARD_LONG_TESTS=1: crash, outage, hostile"
	@echo "                        input) then every benchmark and the scale run; output in reliability-out/ (hours)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

postgres:
	@bash .ci/ensure-postgres

lint: $(STAMP)
	$(BIN)/ruff check bridge bot tests bench helm

typecheck: $(STAMP)
	$(BIN)/mypy

NODE_STAMP := tests/e2ee_node/node_modules/.installed

# Element's crypto (matrix-js-sdk + Rust crypto) for the interoperability tests.
$(NODE_STAMP): tests/e2ee_node/package-lock.json
	npm ci --prefix tests/e2ee_node --no-audit --no-fund
	touch $(NODE_STAMP)

# Dovecot (Debian's) is the IMAP server of the mail bridge's tests; installed when missing.
dovecot:
	@{ test -x /usr/sbin/dovecot && test -x /usr/lib/dovecot/imap && test -x /usr/lib/dovecot/lmtp; } || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends dovecot-core dovecot-imapd dovecot-lmtpd; }

# Debian's Chromium renders the DPO report in the tests (a real browser); installed when missing.
chromium:
	@test -x /usr/bin/chromium || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium; }

pytest: $(STAMP) $(NODE_STAMP) postgres dovecot chromium
	SANTEGUARD_REQUIRE_DOVECOT=1 SANTEGUARD_REQUIRE_CHROMIUM=1 $(BIN)/pytest -q --durations=30

test: lint typecheck pytest

# make demo DEMO_LANG=en: narration and bot in English. DEMO_ARGS=--keep keeps demo-data/.
DEMO_LANG ?= fr
DEMO_ARGS ?=

demo: $(STAMP) dovecot
	$(BIN)/python -m bridge.devtools.demo --lang $(DEMO_LANG) $(DEMO_ARGS)

bench: $(STAMP) postgres
	set -o pipefail; $(BIN)/python -m bench.transactions

bench-directory: $(STAMP) postgres
	$(BIN)/python -m bench.extract_import

.PHONY: bench-gate
bench-gate: $(STAMP)
	$(BIN)/python -m bench.gate

.PHONY: bench-unverify
bench-unverify: $(STAMP) postgres
	$(BIN)/python -m bench.unverify_removal --rooms 50 --db sqlite --db postgres

# Needs Dovecot (the mail lab's IMAP server): installed when missing, as for the tests.
.PHONY: bench-mail
bench-mail: $(STAMP) postgres dovecot
	$(BIN)/python -m bench.mail --db sqlite --db postgres

.PHONY: bench-audit
bench-audit: $(STAMP) postgres
	$(BIN)/python -m bench.audit_log

# The long versions of the crash, outage, hostile-input and memory tests (make test runs the
# short ones), then the benchmarks; each step's output is kept in reliability-out/. Figures
# go to docs/reliability.md and docs/benchmarks.md with the command that produced them.
RELIABILITY_OUT ?= reliability-out

.PHONY: reliability
reliability: $(STAMP) $(NODE_STAMP) postgres dovecot chromium
	mkdir -p $(RELIABILITY_OUT)
	set -o pipefail; SANTEGUARD_LONG_TESTS=1 SANTEGUARD_REQUIRE_POSTGRES=1 SANTEGUARD_REQUIRE_DOVECOT=1 \
		SANTEGUARD_REQUIRE_CHROMIUM=1 $(BIN)/pytest -q -s --durations=30 \
		--basetemp=$(CURDIR)/$(RELIABILITY_OUT)/pytest 2>&1 | tee $(RELIABILITY_OUT)/suite.txt
	set -o pipefail; $(BIN)/python -m bench.transactions --db sqlite --db postgres --repeat 3 | tee $(RELIABILITY_OUT)/ingest.txt
	set -o pipefail; $(BIN)/python -m bench.gate | tee $(RELIABILITY_OUT)/gate.txt
	set -o pipefail; $(BIN)/python -m bench.scale --rooms 1000 --rooms 10000 | tee $(RELIABILITY_OUT)/scale.txt

clean:
	rm -rf $(VENV) demo-data reliability-out .mypy_cache .ruff_cache .pytest_cache
