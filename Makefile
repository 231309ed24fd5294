# Setup is part of every target: on a fresh machine `make test` is the whole story.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-train-dev
# Two pytest workers, each taking whole test files (--dist loadfile: a file's shared servers and
# the documentation's ordered blocks stay on one worker). Run one after another the tests used
# 1.06 of the 2 cores on average (waiting on servers, subprocesses, containers): 14 min 35 s
# against 10 min 8 s with two workers, on the same clean clone.
PYTEST_WORKERS ?= -n 2 --dist loadfile
PYTEST_ARGS ?=

.PHONY: venv test lint typecheck demo clean compare sr models serve containers browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip runs only when needed: a venv that already has this checkout (editable, with the metadata
# pyproject.toml now gives it) and every extra at satisfying versions, as one set up by hand as
# the README says, just gets its stamp (scripts/extras_installed.py tells, naming what is missing).
# torch==2.13.0 goes in first and on its own: the local CPU wheel. Anything that let pip choose
# a torch would pull a newer CUDA build (several GB).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python scripts/extras_installed.py train export serve client dev || { \
		$(BIN)/python -m pip install --upgrade pip && \
		$(BIN)/python -m pip install torch==2.13.0 && \
		$(BIN)/python -m pip install -e '.[train,export,serve,client,dev]'; }
	touch $(STAMP)

venv: $(STAMP)

# The service gets a venv of its own with only the `serve` extra: no torch on the serving path.
# As above, pip runs only when the venv does not have the project and the extra already.
SERVE_VENV ?= .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed-serve
$(SERVE_VENV)/bin/python:
	$(PYTHON) -m venv $(SERVE_VENV)

$(SERVE_STAMP): pyproject.toml | $(SERVE_VENV)/bin/python
	$(SERVE_VENV)/bin/python scripts/extras_installed.py serve || { \
		$(SERVE_VENV)/bin/python -m pip install --upgrade pip && \
		$(SERVE_VENV)/bin/python -m pip install -e '.[serve]'; }
	touch $(SERVE_STAMP)

# The service on the bundled models, on http://127.0.0.1:8000 (GAN_SERVE_* variables configure it).
serve: $(SERVE_STAMP)
	$(SERVE_VENV)/bin/gan-serve --models models

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Chromium for the playground's browser tests: Debian's package (as root, with apt-get). Without
# it those tests are skipped, and with CI=true they fail.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium is not installed and cannot be here: the browser tests will be skipped"

test: lint typecheck browser
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

# A short training run on the toy ring (about a minute), with its samples, plots, checkpoints and
# generator under a new runs/demo-DATE-TIME directory, so an earlier demo is never overwritten.
demo: $(STAMP)
	$(BIN)/gan-train --config configs/ring8.toml --out runs/demo-$$(date +%Y%m%d-%H%M%S)

# The loss comparison table in docs/training.md (long: runs every loss on ring8 and digits).
compare: $(STAMP)
	$(BIN)/gan-train compare configs/ring8.toml configs/digits_cdcgan.toml --out runs/compare

# The super-resolution models: x2 and x4 SRResNet (stage 1), then x4 SRGAN from the x4 run
# (about 45 minutes on a 2-core CPU in all). Results under runs/sr_x2, runs/sr_x4, runs/srgan_x4.
sr: $(STAMP)
	$(BIN)/gan-train --config configs/sr_x2.toml --out runs/sr_x2
	$(BIN)/gan-train --config configs/sr_x4.toml --out runs/sr_x4
	$(BIN)/gan-train --config configs/srgan_x4.toml --out runs/srgan_x4

# The bundled default models (models/, committed): trains each shipped config whose run is
# missing (about 70 minutes on 2 CPU cores from scratch), then exports version 1 of each model,
# verified against PyTorch, replacing the previous version 1. A run older than its config is not
# overwritten: gan-train stops and says so; move that run aside to retrain it.
BUNDLED := digits-conditional digits digits-style srresnet-x2 srresnet-x4 srgan-x4
models/digits-conditional/1/manifest.json: runs/digits_cdcgan/generator.pt
models/digits/1/manifest.json: runs/digits_dcgan/generator.pt
models/digits-style/1/manifest.json: runs/digits_style/generator.pt
models/srresnet-x2/1/manifest.json: runs/sr_x2/generator.pt
models/srresnet-x4/1/manifest.json: runs/sr_x4/generator.pt
models/srgan-x4/1/manifest.json: runs/srgan_x4/generator.pt
runs/srgan_x4/generator.pt: runs/sr_x4/generator.pt  # SRGAN starts from the x4 SRResNet
# The x4 SRResNet and the SRGAN trained from it: the family /upscale's detail blends.
models/srresnet-x4/1/manifest.json models/srgan-x4/1/manifest.json: FAMILY := --family photo-x4

models/%/1/manifest.json: | $(STAMP)
	$(BIN)/gan-export $(firstword $^) --repo models --name $* --version 1 --replace --fp16-variant $(FAMILY)

runs/%/generator.pt: configs/%.toml | $(STAMP)
	$(BIN)/gan-train --config $< --out runs/$*

models: $(BUNDLED:%=models/%/1/manifest.json)
	$(BIN)/gan-export check --repo models
	du -sh models

clean:
	rm -rf $(VENV) $(SERVE_VENV) runs .mypy_cache .ruff_cache .pytest_cache

# Build the images and run them with podman (root; installs podman if missing): what
# tests/docker/test_containers.py runs inside `make test`.
containers: $(STAMP)
	PYTHON=$(BIN)/python PODMAN_COMPOSE=$(BIN)/podman-compose bash scripts/container-test.sh
