# Two commands do all the set-up: `make demo` (the main job on demo data) and `make test`.
# Both create the virtual environment and install what is missing first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# msrun starts workers with the `python` on PATH: keep the venv first.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@bash .ci/system-packages
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[job,test]'
	touch $@

demo: install
	$(PY) -m operator_client submit --loss triplet --local

test: install
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs data/demo-sop
