# `make demo` and `make test` set up .venv with pinned dependencies on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOROVOD_STAMP := $(VENV)/.horovod-installed

.PHONY: demo test test-slow test-cluster horovod bench bench-long peers venv clean

venv: $(STAMP)

# gluonnlp 0.10.0 ships only as a source package whose build needs cython, numpy and wheel already
# installed, hence the first install and --no-build-isolation for the second.
$(STAMP): requirements.txt requirements-export.txt requirements-test.txt constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt numpy==1.23.5 cython==3.3.1 wheel==0.48.0 setuptools==65.5.0
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation -c constraints.txt -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-export.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt -r requirements-test.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gluon-pdqn train

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests

# Parameter-server and Horovod jobs across three network-namespace hosts with real sshd (tests/netns_cluster.py):
# needs root and ip netns (openssh-server is installed with apt if missing); skips with the reason otherwise.
# Installs the Horovod extra first: a failed build fails this target.
test-cluster: $(STAMP) $(HOROVOD_STAMP)
	$(BIN)/python -m pytest -q -m cluster tests

# The horovod learner's extra: Horovod 0.28.1 built from source for MXNet with Gloo and without MPI (about 2
# minutes; needs g++ and cmake), with one line patched: 0.28.1 binds the Gloo sockets of its process sets (the
# global one included) by the host name's address instead of the interface HOROVOD_GLOO_IFACE names, so a job
# meant for loopback or a cluster interface listened elsewhere (see docs/distributed.md).
HOROVOD_VERSION := 0.28.1
HOROVOD_SOURCE := build/horovod/horovod-$(HOROVOD_VERSION)
horovod: $(HOROVOD_STAMP)

$(HOROVOD_STAMP): $(STAMP) requirements-horovod.txt patches/horovod-$(HOROVOD_VERSION)-gloo-interface.patch
	rm -rf build/horovod && mkdir -p build/horovod
	$(BIN)/pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
	horovod==$(HOROVOD_VERSION) -d build/horovod
	tar xzf build/horovod/horovod-$(HOROVOD_VERSION).tar.gz -C build/horovod
	patch -d $(HOROVOD_SOURCE) -p1 < patches/horovod-$(HOROVOD_VERSION)-gloo-interface.patch
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-horovod.txt
	HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
	HOROVOD_WITHOUT_PYTORCH=1 $(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation \
	--no-deps --force-reinstall -c constraints.txt ./$(HOROVOD_SOURCE)
	$(BIN)/horovodrun --check-build | grep "\[X\] MXNet" > /dev/null || { echo "horovod was built without MXNet"; exit 1; }
	touch $@

bench: $(STAMP)
	$(BIN)/python benchmarks/cnn_update.py
	$(BIN)/python benchmarks/pong_loop.py
	$(BIN)/python benchmarks/threads.py
	$(BIN)/python benchmarks/precision_learning.py
	$(BIN)/python benchmarks/cartpole_solve.py
	$(BIN)/python benchmarks/learner_scaling.py
	$(BIN)/python benchmarks/overlap.py
	$(BIN)/python benchmarks/async_scaling.py
	$(BIN)/python benchmarks/dist_scaling.py

# Learning runs that take hours: MinAtar curves (2 games x 3 seeds, about 40 minutes), then Pong against the
# wall clock (2 hours; run it again to resume an interrupted run).
bench-long: $(STAMP)
	$(BIN)/python benchmarks/minatar_curves.py
	$(BIN)/python benchmarks/atari_solve.py --run-dir results/pong-solve

# The peer (Stable-Baselines3's DQN, on torch 2.13.0 CPU) is an optional extra: installed only here.
peers: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-peers.txt
	$(BIN)/python benchmarks/peers.py

clean:
	rm -rf $(VENV) *.egg-info
