.PHONY: install test test-all lint format smoke

install:            ## the README's install command
	pip install -e ".[dev]"

test:               ## the README's test command (CI runs exactly this)
	pytest

test-all:           ## everything, slow end-to-end runs included
	pytest -m "slow or not slow"

lint:
	ruff check . && ruff format --check .

format:
	ruff format . && ruff check --fix .

smoke:              ## the whole cascade in a few minutes on CPU
	python launch/cascade.py recipe=tiny-smoke
