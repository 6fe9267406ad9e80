# `make demo` runs the example project; `make test` runs the tests; `make bench-smoke` runs every benchmark once
# with tiny numbers (benchmarks/README.md). Each makes its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
DJANGO ?= Django>=5.2
PYTEST_ARGS ?=
DEMO_ARGS ?=

BENCH_SMOKE_OUT ?= .bench-smoke

.PHONY: demo test lint docs package screenshots bench-smoke clean

$(VENV)/.installed: setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test,beat,example]" "$(DJANGO)"
	touch $@

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/python -m example_project.demo $(DEMO_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python manage.py check
	$(VENV)/bin/python manage.py makemigrations --check --dry-run

docs: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	$(VENV)/bin/sphinx-build -W -b html docs docs/_build/html

# Build the sdist and wheel, check their metadata, and import the wheel in a clean virtual environment.
package: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	rm -rf dist
	$(VENV)/bin/python -m build --outdir dist .
	$(VENV)/bin/twine check --strict dist/*
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/pip" install --quiet dist/*.whl && \
	cd "$$tmp" && "$$tmp/venv/bin/python" -c "import critical_path; print('installed', critical_path.__version__)"

# Refresh the admin screenshots in docs/_static (needs Chromium at /usr/bin/chromium).
screenshots: $(VENV)/.installed
	$(VENV)/bin/python -m tests.browser.screenshots

# Every benchmark once, with tiny numbers: checks they still work, measures nothing. Needs PostgreSQL
# (BENCH_DATABASE_URL, default the local server) and redis-server on the PATH.
bench-smoke: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e ".[bench]"
	BENCH_BROKER_TIMEOUT=1 $(VENV)/bin/python -m benchmarks.latency --rounds 1 --requests 10 --broker-down \
		--down-requests 1 --down-timeout 2 --out $(BENCH_SMOKE_OUT)
	$(VENV)/bin/python -m benchmarks.throughput --quick --out $(BENCH_SMOKE_OUT)
	$(VENV)/bin/python -m benchmarks.relay --finished 100 1000 --live 50 --repeat 1 --batch-sizes 10 50 \
		--out $(BENCH_SMOKE_OUT)
	$(VENV)/bin/python -m benchmarks.replay --jobs 200 --batch-size 50
	$(VENV)/bin/python -m benchmarks.dashboard --finished 1000 --broken 50 --repeat 2
	$(VENV)/bin/python -m benchmarks.delivery --rounds 1 --jobs 10
	$(VENV)/bin/python -m benchmarks.insert_floor --rounds 1 --requests 20 --out $(BENCH_SMOKE_OUT)
	$(VENV)/bin/python -m benchmarks.starts --quick --out $(BENCH_SMOKE_OUT)
	$(VENV)/bin/python -m benchmarks.metrics --deliveries 100

clean:
	rm -rf $(VENV) .test-data .demo-data docs/_build dist $(BENCH_SMOKE_OUT)
