# Encore: the two commands of the README's quick start, and a few more.
#   make run    install what is missing, build, and run the daemon with a live demo channel
#   make test   install what is missing, build, and run every test
#   make test-gpu  the GPU tests only (on a machine with an NVIDIA GPU or VA-API)
#   make deb    the Debian package (binary, systemd unit, configuration)
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := tests/openapi/.venv
SAMPLE := out/sample-source.mp4

.PHONY: run sample test test-gpu deps test-deps build release deb bench loadgen-report fmt clean

deps:
	@bash packaging/install-deps.sh

# What the tests need on top: Chromium, Node.js and the web players (tests/players), PostgreSQL,
# and a Python venv with the OpenAPI checkers (tests/openapi); each redone only when its lock
# or requirements file is newer than what was installed.
test-deps:
	@bash packaging/install-deps.sh --test
	@[ tests/players/node_modules/.package-lock.json -nt tests/players/package-lock.json ] || \
	    npm ci --prefix tests/players --no-audit --no-fund --loglevel=error
	@# An S3-compatible server that checks signatures, for the object storage tests (built once).
	@command -v s3s-fs >/dev/null 2>&1 || [ -x "$${CARGO_HOME:-$$HOME/.cargo}/bin/s3s-fs" ] || \
	    $(CARGO) install s3s-fs --version 0.14.1 --features binary --locked
	@[ $(VENV)/.installed -nt tests/openapi/requirements.txt ] || { \
	    $(PYTHON) -m venv $(VENV) && \
	    $(VENV)/bin/pip install --quiet --disable-pip-version-check \
	        -r tests/openapi/requirements.txt && \
	    touch $(VENV)/.installed; }

build: deps
	$(CARGO) build --release

release: build

# The Debian package: target/debian/encore_VERSION_ARCH.deb (packaging/build-deb.sh).
deb: build
	@bash packaging/build-deb.sh

# The main job: the daemon with the demo channel (a live ABR ladder from the test pattern).
run: build
	./target/release/encore serve --demo

# A 10 s sample transcoded into a full HLS + DASH ladder under out/sample.
sample: build
	@mkdir -p out
	@[ -f $(SAMPLE) ] || ffmpeg -v error -y -f lavfi -i testsrc2=size=1920x1080:rate=30 \
	    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 10 \
	    -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac $(SAMPLE)
	./target/release/encore transcode $(SAMPLE) --out out/sample --force
	@echo "HLS:  out/sample/master.m3u8"
	@echo "DASH: out/sample/manifest.mpd"

test: test-deps
	$(CARGO) build --all-targets
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	    $(CARGO) nextest run --no-fail-fast; \
	else \
	    $(CARGO) test --no-fail-fast -- --test-threads=1; \
	fi

# The tests that need a GPU (ignored elsewhere, so a machine without one counts them skipped).
test-gpu: deps
	$(CARGO) build --all-targets
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	    $(CARGO) nextest run --no-fail-fast --run-ignored only; \
	else \
	    $(CARGO) test --no-fail-fast -- --ignored --test-threads=1; \
	fi

bench: deps
	$(CARGO) bench

# How many live players one CPU core serves with zero stalls: Encore's origin against nginx
# serving a copy of the same channel (benches/loadgen-vs-nginx.sh; 20 to 30 minutes). The
# report is written to out/loadgen-report.txt.
loadgen-report:
	@bash packaging/install-deps.sh --bench
	$(CARGO) build --release
	bash benches/loadgen-vs-nginx.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf out
