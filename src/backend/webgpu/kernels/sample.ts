/**
 * Temperature sampling on the GPU: one workgroup turns the last logits row into a token id with the same
 * kept set as the CPU's `keptTokens` (top-k, min-p, top-p) and the same draw as `drawKept` (a walk in
 * ascending id order to u * sum of kept weights), so only the id comes back.
 *
 * Thresholds are found by bisection on an order-preserving u32 key of each logit (exact, ~32 passes of a
 * workgroup reduction each), not by sorting. Ties at a threshold are resolved by id, as keptTokens does:
 * top-k keeps the lowest ids among logits equal to the k-th largest; top-p orders by weight (that is, by
 * logit) descending, then id ascending. Id-order steps (tie cut, final walk) give each thread a
 * contiguous chunk, prefix-sum the chunk totals on thread 0, and let the one thread whose chunk holds
 * the crossing walk it. Arithmetic is f32 (the CPU's is f64): results differ only where a cumulative sum
 * lands within rounding of its target.
 */
import { memoKernel, type Kernel } from "../kernel.js";

export const SAMPLE_GROUP = 256;

/** WGSL: order-preserving u32 keys of f32 logits and back (shared with sample-split.ts). */
export const ORDER_KEYS = /* wgsl */ `// larger floats get larger keys; -0 is +0 (the CPU compares them equal)
fn keyOf(v: f32) -> u32 {
  var b = bitcast<u32>(v);
  if (b == 0x80000000u) { b = 0u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn valueOf(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}`;

/** WGSL: the max of a u32 over the workgroup (`redU: array<u32, WG>`), the same in every thread. */
export const MAX_U = /* wgsl */ `fn maxU(lid: u32, v: u32) -> u32 {
  redU[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redU[lid] = max(redU[lid], redU[lid + s]); }
    workgroupBarrier();
  }
  let r = workgroupUniformLoad(&redU[0]);
  workgroupBarrier();
  return r;
}`;

/** "No tie cut" (every id passes `i < ALL`), and "no member" as a result. */
const ALL = 0xffffffff;

/**
 * Bindings: result (u32: [0] the token id, or 0xffffffff when nothing is kept; with mode 1 also
 * [1 + i] = 1 when token i is kept), logits. Params: n, base (first value of the row), topK, mode,
 * temperature, topP, minP, u.
 */
export function sampleKernel(): Kernel {
  return memoKernel("sample", () => ({
    name: "sample",
    bindings: ["write", "read"],
    code: /* wgsl */ `
struct P { n: u32, base: u32, topK: u32, mode: u32, temperature: f32, topP: f32, minP: f32, u: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> result: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
const WG = ${SAMPLE_GROUP}u;
const ALL = ${ALL}u;
var<workgroup> redF: array<f32, WG>;
var<workgroup> redU: array<u32, WG>;
var<workgroup> shU: array<u32, 2>;
var<workgroup> shF: array<f32, 2>;

// thresholds, the same in every thread: token i is in the top-k set when key > kKey, or key == kKey and
// i < kEnd; kept after top-p when key > pKey, or key == pKey and i < pEnd
var<private> maxLogit: f32;
var<private> kKey: u32;
var<private> kEnd: u32;
var<private> pKey: u32;
var<private> pEnd: u32;

${ORDER_KEYS}
fn weight(l: f32) -> f32 { return exp((l - maxLogit) / p.temperature); }
fn inTopK(i: u32, k: u32) -> bool { return k > kKey || (k == kKey && i < kEnd); }
fn keptBeforeTopP(i: u32, l: f32, k: u32) -> bool { return inTopK(i, k) && weight(l) >= p.minP; }
fn kept(i: u32, l: f32, k: u32) -> bool { return keptBeforeTopP(i, l, k) && (k > pKey || (k == pKey && i < pEnd)); }

fn sumF(lid: u32, v: f32) -> f32 {
  redF[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redF[lid] += redF[lid + s]; }
    workgroupBarrier();
  }
  let r = workgroupUniformLoad(&redF[0]);
  workgroupBarrier();
  return r;
}
fn sumU(lid: u32, v: u32) -> u32 {
  redU[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redU[lid] += redU[lid + s]; }
    workgroupBarrier();
  }
  let r = workgroupUniformLoad(&redU[0]);
  workgroupBarrier();
  return r;
}
${MAX_U}
fn minU(lid: u32, v: u32) -> u32 {
  redU[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { redU[lid] = min(redU[lid], redU[lid + s]); }
    workgroupBarrier();
  }
  let r = workgroupUniformLoad(&redU[0]);
  workgroupBarrier();
  return r;
}

// the upper middle of [lo, hi] without overflow
fn upperMid(lo: u32, hi: u32) -> u32 { return lo + ((hi - lo) >> 1u) + ((hi - lo) & 1u); }

fn countAtLeast(lid: u32, t: u32) -> u32 {
  var c = 0u;
  for (var i = lid; i < p.n; i += WG) { if (keyOf(x[p.base + i]) >= t) { c++; } }
  return sumU(lid, c);
}
// weight of the tokens kept before top-p whose key is at least t
fn massAtLeast(lid: u32, t: u32) -> f32 {
  var s = 0.0;
  for (var i = lid; i < p.n; i += WG) {
    let l = x[p.base + i];
    let k = keyOf(l);
    if (k >= t && keptBeforeTopP(i, l, k)) { s += weight(l); }
  }
  return sumF(lid, s);
}

// membership (x) and weight (y) of token i in the id-order walks: stage 0 counts logits at the top-k
// threshold, 1 counts kept tokens at the top-p threshold, 2 weighs the kept tokens
fn member(stage: u32, i: u32) -> vec2<f32> {
  let l = x[p.base + i];
  let k = keyOf(l);
  if (stage == 0u) { return vec2<f32>(select(0.0, 1.0, k == kKey), 1.0); }
  if (stage == 1u) { return vec2<f32>(select(0.0, 1.0, k == pKey && keptBeforeTopP(i, l, k)), 1.0); }
  return vec2<f32>(select(0.0, 1.0, kept(i, l, k)), weight(l));
}

// The first member, in id order, at which the running weight reaches the target (stage 2: u times the
// members' total); the last member if rounding keeps it short; ALL when there is no member.
fn firstReaching(lid: u32, stage: u32, given: f32) -> u32 {
  let chunk = (p.n + WG - 1u) / WG;
  let i0 = min(lid * chunk, p.n);
  let i1 = min(i0 + chunk, p.n);
  var s = 0.0;
  var c = 0u;
  for (var i = i0; i < i1; i++) {
    let e = member(stage, i);
    if (e.x > 0.0) { s += e.y; c++; }
  }
  redF[lid] = s;
  redU[lid] = c;
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    for (var j = 0u; j < WG; j++) { if (redU[j] > 0u) { total += redF[j]; } }
    let goal = select(given, p.u * total, stage == 2u);
    var acc = 0.0;
    var owner = ALL;
    var base = 0.0;
    for (var j = 0u; j < WG; j++) {
      if (redU[j] > 0u) {
        if (owner == ALL || acc < goal) { owner = j; base = acc; }
        acc += redF[j];
        if (acc >= goal) { break; }
      }
    }
    shU[0] = owner;
    shU[1] = ALL;
    shF[0] = base;
    shF[1] = goal;
  }
  workgroupBarrier();
  if (lid == shU[0]) {
    var acc = shF[0];
    var last = ALL;
    for (var i = i0; i < i1; i++) {
      let e = member(stage, i);
      if (e.x > 0.0) {
        last = i;
        acc += e.y;
        if (acc >= shF[1]) { break; }
      }
    }
    shU[1] = last;
  }
  let r = workgroupUniformLoad(&shU[1]);
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  var kmax = 0u;
  var kmin = ALL;
  for (var i = lid; i < p.n; i += WG) {
    let k = keyOf(x[p.base + i]);
    kmax = max(kmax, k);
    kmin = min(kmin, k);
  }
  let hiKey = maxU(lid, kmax);
  let loKey = minU(lid, kmin);
  maxLogit = valueOf(hiKey);
  kKey = 0u;
  kEnd = ALL;
  pKey = 0u;
  pEnd = ALL;

  if (p.topK > 0u && p.topK < p.n) {
    // the k-th largest key: the largest t with at least k keys >= t
    var lo = loKey;
    var hi = hiKey;
    while (lo < hi) {
      let mid = upperMid(lo, hi);
      if (countAtLeast(lid, mid) >= p.topK) { lo = mid; } else { hi = mid - 1u; }
    }
    let above = countAtLeast(lid, lo + 1u);
    kKey = lo;
    // the lowest (k - above) ids among logits equal to the threshold
    kEnd = firstReaching(lid, 0u, f32(p.topK - above)) + 1u;
  }

  if (p.topP < 1.0) {
    var s = 0.0;
    for (var i = lid; i < p.n; i += WG) {
      let l = x[p.base + i];
      if (inTopK(i, keyOf(l))) { s += weight(l); }
    }
    // top-p mass is taken of the top-k set's total, before min-p (as keptTokens)
    let mass = p.topP * sumF(lid, s);
    if (massAtLeast(lid, loKey) >= mass) {
      var lo = loKey;
      var hi = hiKey;
      while (lo < hi) {
        let mid = upperMid(lo, hi);
        if (massAtLeast(lid, mid) >= mass) { lo = mid; } else { hi = mid - 1u; }
      }
      var above = 0.0;
      if (lo < ALL) { above = massAtLeast(lid, lo + 1u); }
      var c = 0u;
      for (var i = lid; i < p.n; i += WG) {
        let l = x[p.base + i];
        let k = keyOf(l);
        if (k == lo && keptBeforeTopP(i, l, k)) { c++; }
      }
      let ties = sumU(lid, c);
      // keptTokens adds tied weights one by one (lowest id first) until the mass is reached
      if (lid == 0u) {
        let w = weight(valueOf(lo));
        var acc = above;
        var n = 0u;
        while (acc < mass && n < ties) {
          acc += w;
          n++;
        }
        shU[0] = n;
      }
      // private values (maxLogit) count as non-uniform: broadcast the count
      let take = workgroupUniformLoad(&shU[0]);
      workgroupBarrier();
      pKey = lo;
      if (take == 0u) {
        pEnd = 0u;
      } else if (take < ties) {
        pEnd = firstReaching(lid, 1u, f32(take)) + 1u;
      }
    }
  }

  let token = firstReaching(lid, 2u, 0.0);
  if (lid == 0u) { result[0] = token; }
  if (p.mode == 1u) {
    for (var i = lid; i < p.n; i += WG) {
      let l = x[p.base + i];
      result[1u + i] = select(0u, 1u, kept(i, l, keyOf(l)));
    }
  }
}`,
  }));
}
