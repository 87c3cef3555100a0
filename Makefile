# stemsite: `make run` sets up and runs the whole site; `make test` runs every test.
# Both install what a fresh Debian/Ubuntu machine lacks (system packages through apt-get).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
REDIS_URL ?= redis://127.0.0.1:6379/0
export REDIS_URL
# `make test` runs the suite on SQLite, then again on the PostgreSQL here (test databases are made
# and dropped beside this one), all but the tests marked database_agnostic (audio, encoding and
# playback, which use the database only to hold rows). TEST_DATABASES=sqlite runs only the first.
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/stemsite
TEST_DATABASES ?= sqlite postgres
# Test processes (pytest-xdist): the suite waits on servers, workers and browsers much of the time.
# Tests are handed out a few at a time, slow ones first (tests/conftest.py), so the processes end together.
TEST_PROCESSES ?= 3

.PHONY: run test lint system-packages browser-package redis postgres migrate demo-model check-model

# apt_install: install the Debian packages named in $(1) that are not installed yet.
define apt_install
	packages="$(1)"; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "stemsite needs: $$packages. Install them with your system's package manager, then run make again." >&2; exit 1; \
	fi; \
	sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	echo "Installing $$packages from the system's packages (apt-get)..."; \
	if ! { $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$packages >/dev/null; }; then \
	  echo "Could not install $$packages with apt-get. Install them by hand, then run make again." >&2; exit 1; \
	fi
endef

# needs: the packages whose commands ($(1): command:package pairs) are missing, or nothing.
needs = $(strip $(foreach pair,$(1),$(if $(shell command -v $(word 1,$(subst :, ,$(pair)))),,$(word 2,$(subst :, ,$(pair))))))

system-packages:
	@missing="$(call needs,ffmpeg:ffmpeg ffprobe:ffmpeg redis-server:redis-server redis-cli:redis-tools)"; \
	python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$${missing// /}" ]; then $(call apt_install,$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' ')); fi

browser-package:
	@$(if $(call needs,chromium:chromium),$(call apt_install,chromium),true)

$(VENV)/.installed: requirements.txt
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "stemsite needs Python 3.11 or newer." >&2; exit 1; }
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	@echo "Installing Python packages into $(VENV) (the first time takes a few minutes)..."
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -r requirements.txt
	@echo "Compiling the tempo and key analysis (once, about half a minute)..."
	@$(PY) -c 'from jobs.engine import analysis; analysis.preload()'
	@touch $@

# Start a local Redis when none answers at REDIS_URL; say so clearly when it cannot.
redis: system-packages
	@if redis-cli -u "$(REDIS_URL)" ping >/dev/null 2>&1; then exit 0; fi; \
	case "$(REDIS_URL)" in \
	  redis://127.0.0.1:*|redis://localhost:*) ;; \
	  *) echo "Redis does not answer at $(REDIS_URL). Start it there, or unset REDIS_URL to use a local one." >&2; exit 1;; \
	esac; \
	port=$$(echo "$(REDIS_URL)" | sed -E 's#^redis://[^:/]+:([0-9]+).*#\1#'); \
	mkdir -p var/redis; \
	echo "Starting Redis on port $$port (data in var/redis)..."; \
	redis-server --daemonize yes --bind 127.0.0.1 --port "$$port" --dir "$(CURDIR)/var/redis" \
	  --logfile "$(CURDIR)/var/redis/redis.log" --pidfile "$(CURDIR)/var/redis/redis.pid"; \
	for i in $$(seq 50); do redis-cli -u "$(REDIS_URL)" ping >/dev/null 2>&1 && exit 0; sleep 0.1; done; \
	echo "Redis did not start; see var/redis/redis.log." >&2; exit 1

# Make sure a PostgreSQL answers at TEST_POSTGRES_URL. When none does and the URL is local, run a
# private one (data in var/postgres), installing Debian's postgresql package if it is missing.
postgres: $(VENV)/.installed
	@url="$(TEST_POSTGRES_URL)"; \
	answers() { $(PY) -c 'import sys, psycopg; psycopg.connect(sys.argv[1], dbname="postgres", connect_timeout=3).close()' "$$url" >/dev/null 2>&1; }; \
	if answers; then exit 0; fi; \
	case "$$url" in \
	  postgres://postgres@127.0.0.1:*|postgres://postgres@localhost:*) ;; \
	  *) echo "PostgreSQL does not answer at $$url. Start it there, set TEST_POSTGRES_URL to one that answers, or run only the SQLite tests with TEST_DATABASES=sqlite." >&2; exit 1;; \
	esac; \
	bin=$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1); \
	if [ -z "$$bin" ]; then $(call apt_install,postgresql); bin=$$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); fi; \
	port=$$(echo "$$url" | sed -E 's#^postgres://[^@]+@[^:/]+:([0-9]+).*#\1#'); \
	as=""; if [ "$$(id -u)" -eq 0 ]; then as="runuser -u postgres --"; fi; \
	mkdir -p var/postgres; [ -z "$$as" ] || chown postgres var/postgres; \
	echo "Starting a private PostgreSQL on port $$port (data in var/postgres)..."; \
	[ -f var/postgres/PG_VERSION ] || $$as "$$bin/initdb" -D var/postgres -U postgres -A trust >/dev/null; \
	$$as "$$bin/pg_ctl" -D var/postgres -l var/postgres/server.log -w \
	  -o "-p $$port -c listen_addresses=127.0.0.1 -k $(CURDIR)/var/postgres" start >/dev/null \
	  || { echo "PostgreSQL did not start; see var/postgres/server.log, or run only the SQLite tests with TEST_DATABASES=sqlite." >&2; exit 1; }; \
	answers || { echo "PostgreSQL started but does not answer at $$url." >&2; exit 1; }

var/secret-key:
	@mkdir -p var
	@umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(50))' > $@

migrate: $(VENV)/.installed var/secret-key
	@SECRET_KEY=$$(cat var/secret-key) $(PY) manage.py migrate --noinput -v 0
	@SECRET_KEY=$$(cat var/secret-key) $(PY) manage.py collectstatic --noinput -v 0

demo-model: $(VENV)/.installed
	@[ -f var/demo-model/mdx_extra.yaml ] || DEBUG=true $(PY) manage.py make_test_model var/demo-model

ifeq ($(DEMO),1)
export STEMSITE_MODEL_REPO := $(CURDIR)/var/demo-model
RUN_NEEDS := demo-model
endif

check-model: $(VENV)/.installed var/secret-key $(RUN_NEEDS)
	@echo "Checking the separation model..."
	@SECRET_KEY=$$(cat var/secret-key) $(PY) manage.py check_model || true

run: system-packages redis migrate check-model
	@echo
	@echo "stemsite is starting at http://$(HOST):$(PORT)/  (web server, $${WORKERS:-1} separation worker(s), one for exports and webhooks and one for imports from links; Ctrl-C stops them all)"
	@echo "Create an account on the site, or an admin with: $(PY) manage.py createsuperuser"
	@echo
	@SECRET_KEY=$${SECRET_KEY:-$$(cat var/secret-key)} STEMSITE_HTTPS=$${STEMSITE_HTTPS:-false} \
	  HOST=$(HOST) PORT=$(PORT) $(VENV)/bin/honcho start -f Procfile

lint: $(VENV)/.installed
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

test: system-packages browser-package redis $(VENV)/.installed lint $(if $(filter postgres,$(TEST_DATABASES)),postgres)
	@for database in $(TEST_DATABASES); do \
	  case $$database in \
	    sqlite) url=""; skip="";; \
	    postgres) url="$(TEST_POSTGRES_URL)"; skip="database_agnostic";; \
	    *) echo "TEST_DATABASES takes sqlite and postgres, not $$database." >&2; exit 1;; \
	  esac; \
	  echo "== Tests on $$database =="; \
	  DATABASE_URL="$$url" SECRET_KEY=stemsite-tests-only $(PY) -m pytest -n $(TEST_PROCESSES) --maxschedchunk=1 $${skip:+-m "not $$skip"} $(PYTEST_ARGS) || exit 1; \
	done
