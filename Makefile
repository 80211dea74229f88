# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?= -n 4 --dist loadgroup

.PHONY: setup demo test bench clean-demo

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch pulls gigabytes of CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/gridlab enqueue grids/demo.yaml
	$(VENV)/bin/gridlab work --workers 2
	$(VENV)/bin/gridlab status
	$(VENV)/bin/gridlab results

test: setup
	bash .ci/services
	# Byte-compile the project once: the suite starts hundreds of Python processes, and where
	# PYTHONDONTWRITEBYTECODE is set (as on these machines) each would compile it again (0.2 s).
	$(PY) -m compileall -q -j 0 harness jobs db slurm dashboards tests benchmarks >/dev/null
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	bash .ci/services
	$(PY) -m benchmarks.run_all

clean-demo:
	rm -rf gridlab.db gridlab.db-wal gridlab.db-shm runs
