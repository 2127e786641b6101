#!/usr/bin/env bash
# Installs every Debian package rvec needs to build, test, fuzz and benchmark.
# Idempotent; run as root (or with sudo) on Debian 12.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-dev            # libFuzzer and the sanitizer runtimes
  nlohmann-json3-dev               # JSON (safetensors headers, configs, --json)
  libcli11-dev                     # command-line parsing
  libfmt-dev                       # formatting
  libhwy-dev                       # SIMD kernels with dynamic dispatch
  libyaml-cpp-dev                  # recipes
  libpcre2-dev                     # tensor-rule regexes
  libgtest-dev libgmock-dev        # unit tests
  librapidcheck-dev                # property tests
  libbenchmark-dev                 # micro-benchmarks
  time bc                          # /usr/bin/time -v and arithmetic in bench/
)

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi
echo "setup: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
