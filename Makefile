VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean setup

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

# Evolve the built-in circle-packing problem with the model-free mutator (a few minutes).
demo: $(STAMP)
	$(VENV)/bin/evoforge run circle_packing_26

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src/evoforge

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/pipeline_throughput.py
	$(VENV)/bin/python benchmarks/parent_sampling.py

clean:
	rm -rf $(VENV) runs .pytest_cache
