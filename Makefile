# `make run` starts the hub; `make test` runs the whole test suite.
# Both create .venv and install requirements/ on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run test install lint clean

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $@

install: $(STAMP)

# Embedded mode (one process) unless REDIS_URL is set; then the web process,
# a worker and the sweeper of the Procfile. DEBUG is on here (a developer's
# machine) unless set.
run: export DEBUG ?= 1
run: export HOST := $(HOST)
run: export PORT := $(PORT)
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo
	if [ -n "$$REDIS_URL" ]; then \
		PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start; \
	else \
		$(BIN)/daphne --verbosity 0 --ping-interval 60 --bind $(HOST) --port $(PORT) project.asgi:application; \
	fi

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* .test-db-*.sqlite3* staticfiles .pytest_cache
