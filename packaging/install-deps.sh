#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Encore needs to build and run; with --test, also what the
# tests need beyond that (Chromium and Node.js for the web players in tests/players, PostgreSQL
# for the store tests, Python's venv for the OpenAPI checks in tests/openapi); with --bench,
# what the benchmarks against nginx need (`encore bench --origin`,
# benches/loadgen-vs-nginx.sh). The flags combine.
# Idempotent: packages already present are skipped, and nothing runs when all are there.
# Uses sudo when not root.
set -euo pipefail

test=false
bench=false
for flag in "$@"; do
  case "$flag" in
    --test) test=true ;;
    --bench) bench=true ;;
    *) echo "install-deps: unknown flag $flag (--test, --bench)" >&2; exit 2 ;;
  esac
done

packages=(
  # FFmpeg libraries (ffmpeg-next binds them) and the CLI (ffmpeg/ffprobe, real clients in tests)
  libavcodec-dev libavformat-dev libavutil-dev libavfilter-dev libswscale-dev
  libswresample-dev libavdevice-dev ffmpeg
  # bindgen in ffmpeg-sys-next needs libclang; clang also compiles kernels/*.cu to PTX
  pkg-config clang libclang-dev
  # the kernels' host build in tests
  g++
  # fonts for the live test source's clock overlay
  fonts-dejavu-core
)

if $test; then
  # headless Chromium runs hls.js and dash.js against Encore's output
  packages+=(chromium)
  # Node.js drives it (any node >= 18 already on the PATH will do)
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
  fi
  # the store tests start their own throwaway server with its initdb and pg_ctl
  # (tests/common/postgres.rs), never the system one
  packages+=(postgresql)
  # `make test-deps` puts the OpenAPI checkers (tests/openapi/requirements.txt) in a venv,
  # which Debian's python3 cannot make without it (no ensurepip)
  packages+=(python3-venv)
  # tests/packaging.rs: `systemd-analyze verify` on the unit, dpkg-deb on the package
  packages+=(systemd binutils)
  # tests/gstreamer.rs: GStreamer's players (gst-launch-1.0, the HLS/DASH demuxers, decoders)
  packages+=(gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav)
fi

if $bench; then
  # the peer the origin is measured against (one worker, sendfile), curl for the live copy it
  # serves, taskset to give each side its own core
  packages+=(nginx-light curl util-linux)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
