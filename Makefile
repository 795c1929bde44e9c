# All set-up on a fresh machine happens here; every target is idempotent.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QUERY ?= Outlook 无法连接 Exchange 0x800CCC0E
QUESTION ?= 打印机总是显示脱机，怎么办？
PORT ?= 8000
WORKERS ?= 2

.PHONY: install run load serve browser test lint eval bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch goes first and exactly: the CPU wheel for 2.13.0 is on the machine; any other spec pulls CUDA packages.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser tests (Playwright drives it; never `playwright install`), and the Noto CJK fonts
# (without them Chinese text renders as boxes in screenshots). Installs only what is missing. Needs root or sudo.
browser:
	@PKGS=""; \
	command -v chromium >/dev/null 2>&1 || PKGS="chromium"; \
	dpkg-query -W -f='$${Status}' fonts-noto-cjk 2>/dev/null | grep -q 'ok installed' || PKGS="$$PKGS fonts-noto-cjk"; \
	if [ -n "$$PKGS" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$PKGS; \
	fi

# The main job: migrate the database, import the sample knowledge base, ingest the sample resolved cases into
# knowledge drafts (near-duplicates linked or merged), search the index derived from the database, and ask the
# assistant a question (a cited answer, as a customer sees it).
# Re-running it imports and ingests nothing twice.
load: install
	$(BIN)/kb db upgrade
	HF_HUB_OFFLINE=1 $(BIN)/kb ingest articles data/samples/corpus.jsonl --confidence validated --audience public -q
	HF_HUB_OFFLINE=1 $(BIN)/kb ingest cases data/samples/cases.jsonl -q
	$(BIN)/kb users import data/samples/users.jsonl
	HF_HUB_OFFLINE=1 $(BIN)/kb search "$(QUERY)"
	HF_HUB_OFFLINE=1 $(BIN)/kb ask "$(QUESTION)"

# The main job: set up, load the samples, and serve the API and the portal on http://127.0.0.1:8000 (Ctrl-C stops).
run: load
	HF_HUB_OFFLINE=1 $(BIN)/kb serve --host 127.0.0.1 --port $(PORT) --workers $(WORKERS)

test: install browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check kb ingest eval api tests
	$(BIN)/mypy

eval: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m eval data/samples --mode hybrid

clean:
	rm -rf $(VENV) .kb
