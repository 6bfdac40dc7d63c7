#!/usr/bin/env bash
# Parity of Frugal with transformers on the reference models (run on the GPU machine, after
# `source .gpu/unpack.sh`): transformers' NLL on models/corpus-val.txt and Frugal's on the CPU and
# WebGPU backends, same windowing; fails if any differs by 1e-3 nats or more.
#   [MODELS="frugal-ar-small frugal-ar-base"] bash training/parity.sh [CHUNKS]   (default 64 windows of 512 tokens)
set -euo pipefail
chunks=${1:-64}
out=${OUT:-/tmp}
status=0
for m in ${MODELS:-frugal-ar-small frugal-ar-base}; do
  ref=$(python3 training/reference_nll.py --model models/$m --data models/corpus-val.txt --ctx 512 --chunks "$chunks")
  for device in cpu webgpu; do
    got=$(node bin/frugal.js eval ppl --model models/$m --data models/corpus-val.txt --ctx 512 --chunks "$chunks" --device $device --json 2>/dev/null)
    line=$(node -e '
      const [ref, got] = process.argv.slice(1).map((s) => JSON.parse(s));
      const d = got.nll - ref.nll;
      const ok = got.tokens === ref.tokens && Math.abs(d) < 1e-3;
      console.log(JSON.stringify({ ok, tokens: got.tokens, transformers: ref.nll, frugal: got.nll, diff: d }));
      process.exitCode = ok ? 0 : 1;' "$ref" "$got") || status=1
    echo "{\"model\":\"$m\",\"device\":\"$device\",\"result\":$line}" | tee -a "$out/parity.jsonl"
  done
done
exit $status
