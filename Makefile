# The two front-door commands, `make demo` and `make test`, set everything up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast bench venv clean image image-test

$(STAMP): pyproject.toml tools/mkvenv.py
	$(PYTHON) tools/mkvenv.py $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/phonehome demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

# The SD image (needs root and Debian's image tools; see the README's "Building the SD image").
image: $(STAMP)
	$(BIN)/python image/build.py

# Boot the image in qemu-system-aarch64 and check it from the host (builds it first; a rebuild reuses the cache).
image-test: image
	$(BIN)/python image/boottest.py

clean:
	rm -rf $(VENV) demo-data .pytest_cache build dist *.egg-info
