/**
 * int8 sparse GEMV variants against our dense q8_0 kernel with int8 activations (kernels.wat kind 5),
 * one thread, CPU time (process.cpuUsage), interleaved rounds, median; "hot" = one copy (cache-resident,
 * instruction throughput), "cold" = copies cycled through 64 MB (DRAM). Weights: random, pruned per row
 * by magnitude, q8_0-quantized; the sparse ones hold the same int8 codes and f16 block scales.
 *   read   v128 loads over the dense q8_0 bytes (the memory anchor)
 *   swz    expand 16 int8 non-zeros per i8x16.swizzle: the pattern's low half is looked up by mask byte 0,
 *          its high half by (popcount(byte 0), byte 1) in a 2-D table, then the dense kernel's math
 *   cx     "compacted activations": per matmul, for every 8 columns g and mask byte m, the activations
 *          at m's set bits, packed (a K/8 x 256 x 16-byte table); the GEMV then dots 8 packed int8
 *          weights (sign-extended by the load) with the table entry: no swizzle per weight
 *   cxb    cx plus building its table (what a call costs)
 * Every variant's output is checked against the dense kernel's (within the f32 summation bound).
 *
 *   node dist/bench/cpu-sparse-q8-variants.js [--shape 1376x512]
 */
import { createRequire } from "node:module";
import { f16Table, f32ToF16 } from "../src/tensor/half.js";
import { pruneMask } from "../src/sparse/prune.js";

interface Wabt { parseWat(name: string, text: string, features: Record<string, boolean>): { toBinary(o: object): { buffer: Uint8Array } } }
type Exports = Record<string, (...a: number[]) => number>;

const dot4 = (w: string, x: string) => `(i32x4.add
  (i32x4.dot_i16x8_s (i16x8.shl (local.get ${w}) (i32.const 8)) (local.get ${x}0))
  (i32x4.dot_i16x8_s (v128.and (local.get ${w}) (local.get $kHi)) (local.get ${x}1)))`;

function wat(): string {
  const L: string[] = [];
  L.push(`(module (import "env" "memory" (memory 1 65536 shared))`);
  L.push(`(func $hsum (param $v v128) (result f32)
    (f32.add (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
      (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))`);
  L.push(`(func (export "read") (param $w i32) (param $bytes i32) (result i32)
    (local $a v128) (local $b v128) (local $end i32)
    (local.set $end (i32.add (local.get $w) (local.get $bytes)))
    (loop $l (local.set $a (i32x4.add (local.get $a) (v128.load (local.get $w))))
      (local.set $b (i32x4.add (local.get $b) (v128.load offset=16 (local.get $w))))
      (local.set $a (i32x4.add (local.get $a) (v128.load offset=32 (local.get $w))))
      (local.set $b (i32x4.add (local.get $b) (v128.load offset=48 (local.get $w))))
      (local.set $w (i32.add (local.get $w) (i32.const 64))) (br_if $l (i32.lt_u (local.get $w) (local.get $end))))
    (i32x4.extract_lane 0 (i32x4.add (local.get $a) (local.get $b))))`);
  // dense q8_0, int8 activations: kernels.wat's $dot4_q8_i8 (four rows share the activation loads)
  const row = (r: number) => `(local.set $v (v128.load offset=2 align=1 (local.get $w${r})))
        (local.set $s ${dot4("$v", "$x").replace("$x0", "$x0").replace("$x1", "$x1")})
        (local.set $v (v128.load offset=18 align=1 (local.get $w${r})))
        (local.set $s (i32x4.add (local.get $s) ${dot4("$v", "$x").replace("$x0", "$x2").replace("$x1", "$x3")}))
        (local.set $acc${r} (f32x4.add (local.get $acc${r}) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.shr_s (local.get $s) (i32.const 8))) (f32x4.splat (f32.mul (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w${r})) (i32.const 2)))) (local.get $dx))))))`;
  L.push(`(func $dot4 (param $w0 i32) (param $w1 i32) (param $w2 i32) (param $w3 i32) (param $xq i32) (param $xs i32) (param $nb i32) (param $out0 i32) (param $out1 i32) (param $out2 i32) (param $out3 i32) (param $f16 i32) (param $kHi v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128) (local $s v128) (local $v v128) (local $end i32) (local $dx f32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128)
    (local.set $end (i32.add (local.get $w0) (i32.mul (local.get $nb) (i32.const 34))))
    (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $w0) (local.get $end)))
        (local.set $dx (f32.load (local.get $xs)))
        (local.set $x0 (v128.load (local.get $xq))) (local.set $x1 (v128.load offset=16 (local.get $xq)))
        (local.set $x2 (v128.load offset=32 (local.get $xq))) (local.set $x3 (v128.load offset=48 (local.get $xq)))
        ${[0, 1, 2, 3].map(row).join("\n")}
        (local.set $w0 (i32.add (local.get $w0) (i32.const 34))) (local.set $w1 (i32.add (local.get $w1) (i32.const 34)))
        (local.set $w2 (i32.add (local.get $w2) (i32.const 34))) (local.set $w3 (i32.add (local.get $w3) (i32.const 34)))
        (local.set $xq (i32.add (local.get $xq) (i32.const 64))) (local.set $xs (i32.add (local.get $xs) (i32.const 4)))
        (br $l)))
    (f32.store (local.get $out0) (call $hsum (local.get $acc0))) (f32.store (local.get $out1) (call $hsum (local.get $acc1)))
    (f32.store (local.get $out2) (call $hsum (local.get $acc2))) (f32.store (local.get $out3) (call $hsum (local.get $acc3))))`);
  // rows split in four quarters walked in lockstep (as kernels.wat's $tile_i8); N a multiple of 4
  L.push(`(func (export "dense") (param $w i32) (param $xq i32) (param $xs i32) (param $out i32) (param $rows i32) (param $nb i32) (param $f16 i32)
    (local $o i32) (local $g i32) (local $rb i32)
    (local.set $g (i32.shr_u (local.get $rows) (i32.const 2)))
    (local.set $rb (i32.mul (local.get $nb) (i32.const 34)))
    (loop $l
      (call $dot4 (i32.add (local.get $w) (i32.mul (local.get $o) (local.get $rb)))
        (i32.add (local.get $w) (i32.mul (i32.add (local.get $o) (local.get $g)) (local.get $rb)))
        (i32.add (local.get $w) (i32.mul (i32.add (local.get $o) (i32.shl (local.get $g) (i32.const 1))) (local.get $rb)))
        (i32.add (local.get $w) (i32.mul (i32.add (local.get $o) (i32.mul (local.get $g) (i32.const 3))) (local.get $rb)))
        (local.get $xq) (local.get $xs) (local.get $nb)
        (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2)))
        (i32.add (local.get $out) (i32.shl (i32.add (local.get $o) (local.get $g)) (i32.const 2)))
        (i32.add (local.get $out) (i32.shl (i32.add (local.get $o) (i32.shl (local.get $g) (i32.const 1))) (i32.const 2)))
        (i32.add (local.get $out) (i32.shl (i32.add (local.get $o) (i32.mul (local.get $g) (i32.const 3))) (i32.const 2)))
        (local.get $f16) (v128.const i16x8 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00))
      (local.set $o (i32.add (local.get $o) (i32.const 1))) (br_if $l (i32.lt_u (local.get $o) (local.get $g)))))`);
  const scale = `(f32x4.splat (f32.mul (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $sp)) (i32.const 2)))) (f32.load (local.get $xs))))`;
  // swz: 16 weights per swizzle; x in the dense kernel's permuted order
  const half = (h: number) => `(local.set $b (i32.and (i32.shr_u (local.get $m) (i32.const ${16 * h})) (i32.const 255)))
        (local.set $c (i32.and (i32.shr_u (local.get $m) (i32.const ${16 * h + 8})) (i32.const 255)))
        (local.set $v (v128.load64_lane 1 (i32.add (local.get $thi) (i32.or (i32.shl (i32.popcnt (local.get $b)) (i32.const 11)) (i32.shl (local.get $c) (i32.const 3))))
          (v128.load64_zero (i32.add (local.get $tlo) (i32.shl (local.get $b) (i32.const 3))))))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p)) (local.get $v)))
        (local.set $p (i32.add (local.get $p) (i32.popcnt (i32.and (i32.shr_u (local.get $m) (i32.const ${16 * h})) (i32.const 0xffff)))))
        (local.set $s (i32x4.add (local.get $s) (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.shl (local.get $v) (i32.const 8)) (v128.load offset=${32 * h} (local.get $xq)))
          (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kHi)) (v128.load offset=${32 * h + 16} (local.get $xq))))))`;
  L.push(`(func $swz (param $mp i32) (param $mEnd i32) (param $p i32) (param $sp i32) (param $xq i32) (param $xs i32) (param $tlo i32) (param $f16 i32) (param $kHi v128) (result f32)
    (local $acc v128) (local $s v128) (local $v v128) (local $m i32) (local $b i32) (local $c i32) (local $thi i32)
    (local.set $thi (i32.add (local.get $tlo) (i32.const 2048)))
    (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
        (local.set $m (i32.load (local.get $mp)))
        (local.set $s (v128.const i32x4 0 0 0 0))
        ${half(0)}
        ${half(1)}
        (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.shr_s (local.get $s) (i32.const 8))) ${scale})))
        (local.set $mp (i32.add (local.get $mp) (i32.const 4))) (local.set $sp (i32.add (local.get $sp) (i32.const 2)))
        (local.set $xq (i32.add (local.get $xq) (i32.const 64))) (local.set $xs (i32.add (local.get $xs) (i32.const 4)))
        (br $l)))
    (call $hsum (local.get $acc)))`);
  // cx: compacted-activation table at $tab, 4096 bytes per 8 columns
  const byte = (k: number) => `(local.set $b ${k === 3 ? "(i32.shr_u (local.get $m) (i32.const 24))" : `(i32.and (i32.shr_u (local.get $m) (i32.const ${8 * k})) (i32.const 255))`})
        (local.set $s (i32x4.add (local.get $s) (i32x4.dot_i16x8_s (v128.load8x8_s (local.get $p)) (v128.load offset=${4096 * k} (i32.add (local.get $tab) (i32.shl (local.get $b) (i32.const 4)))))))
        (local.set $p (i32.add (local.get $p) (i32.popcnt (local.get $b))))`;
  L.push(`(func $cx (param $mp i32) (param $mEnd i32) (param $p i32) (param $sp i32) (param $tab i32) (param $xs i32) (param $f16 i32) (result f32)
    (local $acc v128) (local $s v128) (local $m i32) (local $b i32)
    (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
        (local.set $m (i32.load (local.get $mp)))
        (local.set $s (v128.const i32x4 0 0 0 0))
        ${[0, 1, 2, 3].map(byte).join("\n")}
        (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (f32x4.convert_i32x4_s (local.get $s)) ${scale})))
        (local.set $mp (i32.add (local.get $mp) (i32.const 4))) (local.set $sp (i32.add (local.get $sp) (i32.const 2)))
        (local.set $tab (i32.add (local.get $tab) (i32.const 16384))) (local.set $xs (i32.add (local.get $xs) (i32.const 4)))
        (br $l)))
    (call $hsum (local.get $acc)))`);
  // the compacted table from natural-order int16 activations: entry (g, m) = swizzle(x[8g..8g+7], pattern m)
  L.push(`(func (export "build") (param $xn i32) (param $tab i32) (param $groups i32) (param $pat i32)
    (local $g i32) (local $m i32) (local $xg v128)
    (loop $gl
      (local.set $xg (v128.load (i32.add (local.get $xn) (i32.shl (local.get $g) (i32.const 4)))))
      (local.set $m (i32.const 0))
      (loop $ml
        (v128.store (i32.add (local.get $tab) (local.get $m)) (i8x16.swizzle (local.get $xg) (v128.load (i32.add (local.get $pat) (local.get $m)))))
        (v128.store offset=16 (i32.add (local.get $tab) (local.get $m)) (i8x16.swizzle (local.get $xg) (v128.load offset=16 (i32.add (local.get $pat) (local.get $m)))))
        (local.set $m (i32.add (local.get $m) (i32.const 32))) (br_if $ml (i32.lt_u (local.get $m) (i32.const 4096))))
      (local.set $tab (i32.add (local.get $tab) (i32.const 4096)))
      (local.set $g (i32.add (local.get $g) (i32.const 1))) (br_if $gl (i32.lt_u (local.get $g) (local.get $groups)))))`);
  // drivers: masks, rowPtr, vals, scales, x (xq or table), xs, out, rows, nb, table, f16
  L.push(`(func (export "swz") (param $masks i32) (param $rowPtr i32) (param $vals i32) (param $scales i32) (param $xq i32) (param $xs i32) (param $out i32) (param $rows i32) (param $nb i32) (param $t i32) (param $f16 i32)
    (local $o i32) (local $mp i32)
    (loop $l
      (local.set $mp (i32.add (local.get $masks) (i32.shl (i32.mul (local.get $o) (local.get $nb)) (i32.const 2))))
      (f32.store (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2)))
        (call $swz (local.get $mp) (i32.add (local.get $mp) (i32.shl (local.get $nb) (i32.const 2)))
          (i32.add (local.get $vals) (i32.load (i32.add (local.get $rowPtr) (i32.shl (local.get $o) (i32.const 2)))))
          (i32.add (local.get $scales) (i32.shl (i32.mul (local.get $o) (local.get $nb)) (i32.const 1)))
          (local.get $xq) (local.get $xs) (local.get $t) (local.get $f16) (v128.const i16x8 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00)))
      (local.set $o (i32.add (local.get $o) (i32.const 1))) (br_if $l (i32.lt_u (local.get $o) (local.get $rows)))))`);
  L.push(`(func (export "cx") (param $masks i32) (param $rowPtr i32) (param $vals i32) (param $scales i32) (param $tab i32) (param $xs i32) (param $out i32) (param $rows i32) (param $nb i32) (param $t i32) (param $f16 i32)
    (local $o i32) (local $mp i32)
    (loop $l
      (local.set $mp (i32.add (local.get $masks) (i32.shl (i32.mul (local.get $o) (local.get $nb)) (i32.const 2))))
      (f32.store (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2)))
        (call $cx (local.get $mp) (i32.add (local.get $mp) (i32.shl (local.get $nb) (i32.const 2)))
          (i32.add (local.get $vals) (i32.load (i32.add (local.get $rowPtr) (i32.shl (local.get $o) (i32.const 2)))))
          (i32.add (local.get $scales) (i32.shl (i32.mul (local.get $o) (local.get $nb)) (i32.const 1)))
          (local.get $tab) (local.get $xs) (local.get $f16)))
      (local.set $o (i32.add (local.get $o) (i32.const 1))) (br_if $l (i32.lt_u (local.get $o) (local.get $rows)))))`);
  L.push(")");
  return L.join("\n");
}

const args = process.argv.slice(2);
const shapeArg = args[args.indexOf("--shape") + 1];
const [N, K] = (args.includes("--shape") && shapeArg ? shapeArg : "1376x512").split("x").map(Number) as [number, number];
if (N % 4 || K % 32) throw new Error(`--shape ${N}x${K}: rows must be a multiple of 4, columns of 32`);
const nb = K / 32;
const wabt = (await (createRequire(import.meta.url)("wabt") as () => Promise<Wabt>)());
const bin = wabt.parseWat("q8-variants.wat", wat(), { simd: true, threads: true }).toBinary({}).buffer;
const memory = new WebAssembly.Memory({ initial: 16384, maximum: 65536, shared: true });
const k = (await WebAssembly.instantiate(new WebAssembly.Module(new Uint8Array(bin)), { env: { memory } })).exports as unknown as Exports;
const u8 = new Uint8Array(memory.buffer);
const dv = new DataView(memory.buffer);
let top = 1 << 16;
const alloc = (n: number) => { const a = top; top += (n + 63) & ~63; return a; };
const f16 = alloc(65536 * 4);
new Float32Array(memory.buffer, f16, 65536).set(f16Table());
// swz tables: low half by byte 0 (256 x 8), high half by (popcount(byte 0), byte 1) (9 x 256 x 8)
const tlo = alloc(2048 + 9 * 2048);
for (let b = 0; b < 256; b++) {
  for (let pc = 0; pc <= 8; pc++) {
    let rank = 0;
    for (let i = 0; i < 8; i++) {
      const set = (b >> i) & 1;
      if (pc === 0) u8[tlo + b * 8 + i] = set ? rank : 0x80;
      u8[tlo + 2048 + pc * 2048 + b * 8 + i] = set ? pc + rank : 0x80;
      rank += set;
    }
  }
}
// cx build patterns: entry m packs the int16 lanes at m's set bits, zeros after
const pat = alloc(4096);
for (let m = 0; m < 256; m++) {
  let r = 0;
  for (let i = 0; i < 8; i++) u8[pat + m * 16 + i] = u8[pat + m * 16 + 8 + i] = 0x80;
  for (let i = 0; i < 8; i++) if ((m >> i) & 1) { u8[pat + m * 16 + 2 * r] = 2 * i; u8[pat + m * 16 + 2 * r + 1] = 2 * i + 1; r++; }
}
// activations: int8 per 32-block (scale amax / 127), as permuted int16 (dense, swz) and natural int16 (cx)
const xf = new Float32Array(K).map(() => Math.random() * 2 - 1);
const xq = alloc(nb * 64), xs = alloc(nb * 4), xn = alloc(K * 2);
const qx = new Int8Array(K);
for (let b = 0; b < nb; b++) {
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(xf[32 * b + j]!));
  const d = amax / 127;
  dv.setFloat32(xs + 4 * b, d, true);
  for (let j = 0; j < 32; j++) qx[32 * b + j] = Math.round(xf[32 * b + j]! / d);
  const perm = [...Array.from({ length: 8 }, (_, i) => 2 * i), ...Array.from({ length: 8 }, (_, i) => 2 * i + 1)];
  for (let h = 0; h < 2; h++) for (let i = 0; i < 16; i++) dv.setInt16(xq + b * 64 + h * 32 + 2 * i, qx[32 * b + 16 * h + perm[i]!]!, true);
}
for (let i = 0; i < K; i++) dv.setInt16(xn + 2 * i, qx[i]!, true);
const tab = alloc((K / 8) * 4096);
const out = alloc(N * 4 + 64);
const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1]!;
const w = new Float32Array(N * K).map(() => Math.random() * 2 - 1);
const ft = f16Table();
console.log(`int8 GEMV variants, ${N}x${K}, 1 thread, CPU time; speed relative to the dense q8_0 kernel with int8 activations (higher is faster)`);
for (const cold of [false, true]) {
  for (const s of [0.5, 0.7]) {
    const mask = pruneMask(w, N, K, s);
    // q8_0 of the pruned weights, and the same codes as bitmap + packed int8 + f16 scales [N][nb]
    const q = new Int8Array(N * K), sc = new Uint16Array(N * nb);
    for (let bI = 0; bI < N * nb; bI++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) if (!mask[32 * bI + j]) amax = Math.max(amax, Math.abs(w[32 * bI + j]!));
      sc[bI] = f32ToF16(amax / 127);
      for (let j = 0; j < 32; j++) q[32 * bI + j] = mask[32 * bI + j] ? 0 : Math.round(w[32 * bI + j]! / (amax / 127));
    }
    const denseBytes = N * nb * 34;
    let nnz = 0;
    for (const v of q) if (v) nnz++;
    const maskOff = 0, rowPtrOff = N * nb * 4, scaleOff = rowPtrOff + (N + 1) * 4, valOff = scaleOff + N * nb * 2;
    const spBytes = valOff + nnz + 16;
    const copies = cold ? Math.ceil(64e6 / denseBytes) : 1;
    const dense: number[] = [], sps: number[] = [];
    for (let c = 0; c < copies; c++) {
      const d = alloc(denseBytes);
      for (let bI = 0; bI < N * nb; bI++) {
        dv.setUint16(d + 34 * bI, sc[bI]!, true);
        for (let j = 0; j < 32; j++) dv.setInt8(d + 34 * bI + 2 + j, q[32 * bI + j]!);
      }
      dense.push(d);
      const sp = alloc(spBytes);
      let p = 0;
      for (let o = 0; o < N; o++) {
        dv.setUint32(sp + rowPtrOff + 4 * o, p, true);
        for (let b = 0; b < nb; b++) {
          let m = 0;
          for (let j = 0; j < 32; j++) {
            const v = q[o * K + 32 * b + j]!;
            if (v) { m |= 1 << j; dv.setInt8(sp + valOff + p++, v); }
          }
          dv.setUint32(sp + maskOff + 4 * (o * nb + b), m >>> 0, true);
          dv.setUint16(sp + scaleOff + 2 * (o * nb + b), sc[o * nb + b]!, true);
        }
      }
      sps.push(sp);
    }
    const spArgs = (i: number) => [sps[i]! + maskOff, sps[i]! + rowPtrOff, sps[i]! + valOff, sps[i]! + scaleOff] as const;
    const variants: Record<string, (i: number) => unknown> = {
      dense: (i) => k.dense!(dense[i]!, xq, xs, out, N, nb, f16),
      read: (i) => k.read!(dense[i]!, denseBytes),
      swz: (i) => k.swz!(...spArgs(i), xq, xs, out, N, nb, tlo, f16),
      cx: (i) => k.cx!(...spArgs(i), tab, xs, out, N, nb, 0, f16),
      cxb: (i) => { k.build!(xn, tab, K / 8, pat); k.cx!(...spArgs(i), tab, xs, out, N, nb, 0, f16); },
    };
    // reference: f64 sum of the same integer products and scales
    const ref = new Float64Array(N), bound = new Float64Array(N);
    for (let o = 0; o < N; o++) for (let b = 0; b < nb; b++) {
      let si = 0, sa = 0;
      for (let j = 0; j < 32; j++) { si += q[o * K + 32 * b + j]! * qx[32 * b + j]!; sa += Math.abs(q[o * K + 32 * b + j]! * qx[32 * b + j]!); }
      const f = ft[sc[o * nb + b]!]! * dv.getFloat32(xs + 4 * b, true);
      ref[o] += si * f;
      bound[o] += sa * Math.abs(f);
    }
    for (const v of ["dense", "swz", "cxb"]) {
      variants[v]!(0);
      const y = new Float32Array(memory.buffer, out, N);
      for (let o = 0; o < N; o++) if (Math.abs(y[o]! - ref[o]!) > 1e-6 * (bound[o]! + 1e-30) * 4) throw new Error(`${v}: row ${o} gives ${y[o]}, the f64 reference ${ref[o]}`);
    }
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((n) => [n, []]));
    const calls = Math.max(copies * 4, 200);
    for (let r = 0; r < 11; r++) {
      for (const [n, f] of Object.entries(variants)) {
        f(0);
        const t0 = process.cpuUsage();
        for (let i = 0; i < calls; i++) f(i % copies);
        const dt = process.cpuUsage(t0);
        times[n]!.push((dt.user + dt.system) / 1e3 / calls);
      }
    }
    const d = med(times.dense!);
    console.log(`${cold ? "cold" : "hot "} s=${(s * 100).toFixed(0)}% | dense ${(d * 1e3).toFixed(1)} us ${(denseBytes / d / 1e6).toFixed(1)} GB/s | ` +
      Object.keys(variants).filter((n) => n !== "dense").map((n) => `${n} x${(d / med(times[n]!)).toFixed(2)}`).join("  ") +
      ` | sparse bytes / dense ${(spBytes / denseBytes).toFixed(3)}`);
  }
}
