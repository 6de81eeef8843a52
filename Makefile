# avatar_agent — two commands on a fresh machine:
#   make demo   install (.venv, extras 'local,examples,serve'), pull the default models, answer
#               examples/assets/question.wav with the avatar -> out/reply.mp4 (window if $DISPLAY)
#   make test   install (.venv, extras 'local,dev,whisper,convert,serve'), Debian test packages, models, run pytest
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=
# models the tests need besides the defaults (Smart Turn: audio.vad.turn_model=smart_turn)
TEST_MODELS := smart-turn-v3.2

.PHONY: demo test install install-dev models assets sysdeps sysdeps-test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip

$(VENV)/.local-installed: pyproject.toml | $(BIN)/python
	PYTHONWARNINGS='ignore:Editable installation' $(PIP) install -e '.[local,examples,serve]'
	touch $@

# the tests also exercise openai-whisper and the Wav2Lip converter: extras whisper and
# convert bring torch==2.13.0 (CPU build). coqui-tts cannot be imported with PyPI's
# torchaudio next to a CPU torch; its tests skip with that reason.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	PYTHONWARNINGS='ignore:Editable installation' $(PIP) install -e '.[local,examples,dev,whisper,convert,serve]'
	touch $@ $(VENV)/.local-installed

install: $(VENV)/.local-installed
install-dev: $(VENV)/.dev-installed

sysdeps:
	bash scripts/install-sysdeps.sh runtime

sysdeps-test:
	bash scripts/install-sysdeps.sh test

models: | $(BIN)/python
	$(BIN)/avatar-agent models pull

assets: | $(BIN)/python
	@test -f examples/assets/face.png -a -f examples/assets/question.wav || $(BIN)/python examples/make_assets.py

demo: sysdeps install models assets
	$(BIN)/python examples/demo_conversation.py --image examples/assets/face.png \
	  --input-audio examples/assets/question.wav --output out/reply.mp4 $(if $(DISPLAY),--show)

test: sysdeps-test install-dev models assets
	$(BIN)/avatar-agent models pull $(TEST_MODELS)
	$(BIN)/python -m pytest -rs $(PYTEST_ARGS)

bench: install-dev models assets
	$(BIN)/avatar-agent models pull $(TEST_MODELS)
	$(BIN)/avatar-agent bench all

lint: install-dev
	$(BIN)/ruff check avatar_agent tests examples benchmarks

clean:
	rm -rf out .pytest_cache .ruff_cache
