# docs/kv-session8-heldout.svg and the held-out table of docs/kv-cache.md, "Session 8" (run from the repository root after a build)
node dist/bench/kv-interval-plot.js --title "Session 8, held-out windows 64–95: Δppl against dense with paired bootstrap 95% intervals" \
 --subtitle "frugal-ar-base, CPU, 32 windows × 512 tokens (prefill 384), 4,096 scored tokens; 1–4: 8× of a 16-bit cache (≤ 1,024 B/token), 5–9: keep 0.5, f32 cache" \
 --svg docs/kv-session8-heldout.svg \
 --rows "pick@streaming:keep=0.49,dense0=0,pyramid=-0.5|k=int4g64-rot,v=fp3-razer-g32-rot;round 3@streaming:keep=0.49,dense0=0,pyramid=-0.25|k=int4g64-rot,v=fp3-razer-g32-rot;round 1@streaming:keep=0.49,dense0=0|k=int4g64-rot,v=fp3-razer-g32-rot;session 6@streaming:keep=0.5|fp3-razer-g32-rot;TB v1@tokenbutler:keep=0.5|f32;TB w0.75@tokenbutler:keep=0.5,window=0.75|f32;H2O@h2o:keep=0.5|f32;SnapKV@snapkv:keep=0.5|f32;Streaming@streaming:keep=0.5|f32" \
 ${1:-docs/results/session8/kv-eval-512-heldout-offset64.json}
