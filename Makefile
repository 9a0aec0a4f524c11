# Every set-up step lives here: a fresh clone needs only Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck pytest bench clean browser cgexec erlang

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python cgexec
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python cgexec
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet -e '.[ray]' \
	  || echo "warning: could not install ray: the Ray placement tests will skip (loudly)"
	touch $@ $(VENV)/.installed

# The exec shim that puts each agent in its cgroup before it runs (actors/cgexec.c).
# Static and without libc for x86-64 (one tiny exec); against static libc elsewhere.
# Without a C compiler agents join through /bin/sh instead (slower, as correct), so a
# failure here warns and goes on. cc is installed once when we can (root with apt);
# the stamp keeps a machine without network from trying again at every make.
CGEXEC := actors/_bin/ziggie-cgexec
CGEXEC_NOLIBC := -Os -static -nostdlib -ffreestanding -fno-stack-protector -fno-builtin \
  -fno-tree-loop-distribute-patterns -fno-asynchronous-unwind-tables
cgexec: $(CGEXEC)
$(CGEXEC): actors/cgexec.c
	@mkdir -p $(@D)
	@if ! command -v cc >/dev/null && [ ! -e $(@D)/.apt-tried ] && [ "$$(id -u)" = 0 ] \
	  && command -v apt-get >/dev/null; then touch $(@D)/.apt-tried; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends gcc libc6-dev) >/dev/null 2>&1 || true; fi
	@case "$$(cc -dumpmachine 2>/dev/null)" in x86_64-*) flags="$(CGEXEC_NOLIBC)";; \
	  *) flags="-O2 -static -DCGEXEC_LIBC";; esac; \
	cc $$flags -Wall -Wextra -o $@.tmp $< && mv $@.tmp $@ \
	  || { rm -f $@.tmp; echo "warning: could not build $@: agents join cgroups through /bin/sh"; }

# The dashboard tests drive Debian's headless Chromium (playwright cannot download one
# here). Installed when we can (root with apt); elsewhere those tests skip, loudly.
browser:
	@if command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium-headless-shell) >/dev/null 2>&1 \
	  || echo "warning: could not install chromium-headless-shell: dashboard tests will skip"; \
	else echo "warning: no chromium and no root: dashboard tests will skip"; fi

# The differential test holds the kernel against Erlang/OTP's own supervisor (Debian's
# erlang-nox). Installed when we can (root with apt), tried once (the stamp keeps a
# machine without network from trying at every make); elsewhere that test skips, loudly.
ERLANG_TRIED := $(VENV)/.erlang-apt-tried
erlang: | $(BIN)/python
	@if command -v escript >/dev/null; then :; \
	elif [ -e $(ERLANG_TRIED) ]; then \
	  echo "warning: no Erlang/OTP (installing erlang-nox failed before; rm $(ERLANG_TRIED) to retry): the OTP differential test will skip"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  touch $(ERLANG_TRIED); \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    -o DPkg::Lock::Timeout=300 --no-install-recommends erlang-nox) >/dev/null 2>&1 \
	  || echo "warning: could not install erlang-nox: the OTP differential test will skip"; \
	else echo "warning: no Erlang/OTP and no root with apt: the OTP differential test will skip"; fi

demo: $(VENV)/.installed
	$(BIN)/python -m examples.demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check supervisor actors tests examples bench docs
	$(BIN)/ruff format --check supervisor actors tests examples bench docs

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev browser erlang
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis actors/_bin
