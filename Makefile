# The course's commands. `make lab` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NB00   := notebooks/00_welcome_and_setup.ipynb
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings
PYTEST_NB := --nbval-lax --nbval-current-env --nbval-cell-timeout=900 \
             --nbval-sanitize-with jupyter_config/nbval_sanitize.cfg

.PHONY: setup lab test test-fast execute student grade bench weights clean

# The virtual environment, rebuilt when the package's requirements change.
$(STAMP): pyproject.toml jupyter_config/lab/overrides.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	mkdir -p $(LAB_SETTINGS) && cp jupyter_config/lab/overrides.json $(LAB_SETTINGS)/overrides.json
	touch $(STAMP)

# torchvision's ImageNet MobileNetV2 weights into torchvision's cache (a quick sha256 check when there).
IMAGENET_WEIGHTS := $(BIN)/python -m course_utils.imagenet

setup: $(STAMP)
	$(IMAGENET_WEIGHTS)

# Jupyter refuses to start as root unless told to (containers often run as root).
lab: $(STAMP)
	$(IMAGENET_WEIGHTS)
	$(BIN)/jupyter lab --config=jupyter_config/jupyter_server_config.py $(if $(filter 0,$(shell id -u)),--allow-root) $(NB00)

# The checked outputs must not depend on the CPU (DESIGN.md, "Portability of checked outputs"), so
# the notebooks run a second time with other kernels (AVX2 instead of AVX-512, oneDNN capped at
# AVX2) and one thread: a cell printing digits that only this machine reproduces fails here.
OTHER_KERNELS := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=1

test: $(STAMP)
	$(IMAGENET_WEIGHTS)
	MPLBACKEND=Agg $(BIN)/python -m pytest tests notebooks $(PYTEST_NB)
	MPLBACKEND=Agg $(OTHER_KERNELS) $(BIN)/python -m pytest notebooks $(PYTEST_NB) -p no:cacheprovider

# Unit and property tests only (no notebooks): the quick loop while developing.
test-fast: $(STAMP)
	$(IMAGENET_WEIGHTS)
	MPLBACKEND=Agg $(BIN)/python -m pytest tests -p no:nbval -x -q

execute: $(STAMP)
	$(BIN)/python tools/execute_notebooks.py notebooks/[0-9]*.ipynb

student: $(STAMP)
	$(BIN)/python tools/make_student.py notebooks student

# Run every submitted notebook headless and write grades.csv and grades.md into SUBMISSIONS
# (a folder of notebooks, or one sub-folder per student); GRADE_TIMEOUT seconds per notebook.
GRADE_TIMEOUT ?= 600
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder [GRADE_TIMEOUT=600]"; exit 2; }
	$(BIN)/python tools/grade.py "$(SUBMISSIONS)" --timeout $(GRADE_TIMEOUT)

# Retrain every model of the zoo (data/weights/) with the course's own code and update the manifest.
# NPROC=N trains data-parallel on N processes with torchrun (the batch size is per process).
NPROC ?= 1
weights: $(STAMP)
ifeq ($(NPROC),1)
	$(BIN)/python -m course_utils.zoo train --all
else
	$(BIN)/torchrun --standalone --nproc_per_node=$(NPROC) -m course_utils.zoo train --all
endif

bench: $(STAMP)
	for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf student .pytest_cache .hypothesis
