#!/usr/bin/env bash
# Packs what the GPU machine needs in three folders small enough to travel separately (each device call
# carries at most 64 MiB with the working tree):
#   .gpu/        Node.js, the Vulkan loader and unpack.sh (shared/gpu/pack.sh --no-modules)
#   .gpu-mods/   the runtime node_modules only (Dawn for linux-x64, the @huggingface packages)
#   .gpu-llama/  bench/node_modules with node-llama-cpp's JS and its prebuilt Vulkan binaries (no sources)
# On the machine: source .gpu/unpack.sh; tar -xJf .gpu-mods/node_modules.tar.xz; tar -xJf .gpu-llama/bench-modules.tar.xz
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
for d in /.gpu-mods/ /.gpu-llama/; do grep -qx "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
bash "$root/../shared/gpu/pack.sh" --no-modules >/dev/null
mkdir -p .gpu-mods .gpu-llama
npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$root/||" | grep '^node_modules/' | sort -u > /tmp/frugal-runtime-modules
tar -c --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
    --exclude='node_modules/webgpu/dist/linux-arm64' -T /tmp/frugal-runtime-modules | xz -T0 -6 > .gpu-mods/node_modules.tar.xz
if [ -d bench/node_modules/node-llama-cpp ]; then
  version=$(node -p 'require("./bench/node_modules/node-llama-cpp/package.json").version')
  if [ ! -d bench/node_modules/@node-llama-cpp/linux-x64-vulkan ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack -q "@node-llama-cpp/linux-x64-vulkan@$version" >/dev/null)
    mkdir -p bench/node_modules/@node-llama-cpp/linux-x64-vulkan
    tar -xzf "$tmp"/*.tgz -C bench/node_modules/@node-llama-cpp/linux-x64-vulkan --strip-components=1
  fi
  # only the Vulkan prebuilt travels: npm also installs the CUDA (540 MB) and ARM ones as optional packages
  tar -c --exclude='bench/node_modules/node-llama-cpp/llama/llama.cpp' \
      --exclude='bench/node_modules/@node-llama-cpp/linux-x64-cuda*' --exclude='bench/node_modules/@node-llama-cpp/linux-arm*' \
      --exclude='bench/node_modules/@node-llama-cpp/linux-x64' \
      --exclude='bench/node_modules/node-llama-cpp/llama/localBuilds' \
      --exclude='bench/node_modules/node-llama-cpp/llama/gitRelease.bundle' \
      --exclude='bench/node_modules/node-llama-cpp/llama/addon' bench/node_modules | xz -T0 -6 > .gpu-llama/bench-modules.tar.xz
fi
du -sh .gpu .gpu-mods .gpu-llama | sed 's/^/  /'
