/**
 * Why the CPU sparse-bitmap GEMV looks the way it does (docs/sparsity.md): kernel variants for bf16
 * values timed against the dense bf16 kernel, one thread, by CPU time (process.cpuUsage, so time the
 * thread spends descheduled on this shared machine does not count), interleaved rounds, median.
 * "hot": one 1376x512 matrix that stays in L2 (instruction throughput); "cold": copies cycled through
 * 64 MB (DRAM). Variants (copies of kernels.wat's loops, assembled here with wabt):
 *   read   a v128 load per 16 bytes of the dense weights, summed (the memory anchor)
 *   sp1    the previous sparse kernel: one mask byte (8 weights) per loop iteration
 *   sp1u   the shipped one: one mask word (4 bytes, 32 weights) per iteration
 *   sp1m   as sp1u, the pattern offsets taken from the mask word in a register (shift and mask)
 *   sp4w   four output rows per pass sharing the activation loads
 *   walk   a set-bit walk (ctz, one multiply-add per non-zero): work per non-zero, not per position
 * With --relaxed (relaxed SIMD, turned on here for Node 20), also:
 *   denser the dense kernel with f32x4.relaxed_madd
 *   sp1r   sp1u with i8x16.relaxed_swizzle and the pattern table at a constant address (what
 *          kernels-relaxed.wasm runs; kernels.wasm is sp1u with the constant address)
 *   sp1rv  sp1u with i8x16.relaxed_swizzle only (the table address in a register)
 *   sp1r2  sp1r with two mask words (64 weights) per iteration (K a multiple of 64)
 *   sp1rm  sp1r with f32x4.relaxed_madd
 *   sp2r   sp1r over two output rows per pass, sharing the activation loads
 * Every variant's output is checked against the dense kernel's (sp* bit-exact, walk within 1e-5).
 *
 *   node dist/bench/cpu-sparse-variants.js [--shape 1376x512] [--relaxed]
 */
import { createRequire } from "node:module";
import v8 from "node:v8";
import { packSparse, sparseLayout } from "../src/sparse/bitmap.js";
import { sparseSwizzleTable } from "../src/sparse/cpu-table.js";
import { f32ToBf16 } from "../src/tensor/half.js";
import { pruneMask } from "../src/sparse/prune.js";

interface Wabt { parseWat(name: string, text: string, features: Record<string, boolean>): { toBinary(o: object): { buffer: Uint8Array } } }
type Exports = Record<string, (...a: number[]) => number>;

function wat(): string {
  const L: string[] = [];
  L.push(`(module (import "env" "memory" (memory 1 65536 shared))`);
  L.push(`(func $hsum (param $v v128) (result f32)
    (f32.add (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
      (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))`);
  // dense bf16 (copy of kernels.wat)
  L.push(`(func $dot_bf16 (param $w i32) (param $x i32) (param $n i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $end i32) (local $v v128)
    (local.set $end (i32.add (local.get $w) (i32.shl (local.get $n) (i32.const 1))))
    (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $v (v128.load (local.get $w)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i32x4 0 0 0 0) (local.get $v)) (v128.load (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i32x4 0 0 0 0) (local.get $v)) (v128.load offset=16 (local.get $x)))))
        (local.set $w (i32.add (local.get $w) (i32.const 16)))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (br $l)))
    (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))`);
  L.push(`(func (export "dense") (param $w i32) (param $x i32) (param $out i32) (param $rows i32) (param $n i32)
    (local $o i32)
    (loop $l (f32.store (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2)))
       (call $dot_bf16 (i32.add (local.get $w) (i32.mul (local.get $o) (i32.shl (local.get $n) (i32.const 1)))) (local.get $x) (local.get $n)))
     (local.set $o (i32.add (local.get $o) (i32.const 1))) (br_if $l (i32.lt_u (local.get $o) (local.get $rows)))))`);
  L.push(`(func (export "read") (param $w i32) (param $bytes i32) (result i32)
    (local $a v128) (local $b v128) (local $end i32)
    (local.set $end (i32.add (local.get $w) (local.get $bytes)))
    (loop $l (local.set $a (i32x4.add (local.get $a) (v128.load (local.get $w))))
      (local.set $b (i32x4.add (local.get $b) (v128.load offset=16 (local.get $w))))
      (local.set $a (i32x4.add (local.get $a) (v128.load offset=32 (local.get $w))))
      (local.set $b (i32x4.add (local.get $b) (v128.load offset=48 (local.get $w))))
      (local.set $w (i32.add (local.get $w) (i32.const 64))) (br_if $l (i32.lt_u (local.get $w) (local.get $end))))
    (i32x4.extract_lane 0 (i32x4.add (local.get $a) (local.get $b))))`);
  // current sparse bf16 (1 row)
  L.push(`(func $sgemv_bf16 (param $mp i32) (param $mEnd i32) (param $p i32) (param $x i32) (param $table i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $b i32) (local $v v128) (local $zero v128)
    (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
        (local.set $b (i32.load8_u (local.get $mp)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p)) (v128.load (i32.add (local.get $table) (i32.shl (local.get $b) (i32.const 4))))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v)) (v128.load (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v)) (v128.load offset=16 (local.get $x)))))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (local.set $mp (i32.add (local.get $mp) (i32.const 1)))
        (br $l)))
    (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))`);
  // args: masks base, rowPtr base, vals base, x, out, rows, nChunks, table
  L.push(`(func (export "sp1") (param $masks i32) (param $rowPtr i32) (param $vals i32) (param $x i32) (param $out i32) (param $rows i32) (param $nc i32) (param $table i32)
    (local $o i32) (local $mp i32)
    (loop $l
      (local.set $mp (i32.add (local.get $masks) (i32.shl (i32.mul (local.get $o) (local.get $nc)) (i32.const 2))))
      (f32.store (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2)))
        (call $sgemv_bf16 (local.get $mp) (i32.add (local.get $mp) (i32.shl (local.get $nc) (i32.const 2)))
          (i32.add (local.get $vals) (i32.shl (i32.load (i32.add (local.get $rowPtr) (i32.shl (local.get $o) (i32.const 2)))) (i32.const 1)))
          (local.get $x) (local.get $table)))
      (local.set $o (i32.add (local.get $o) (i32.const 1))) (br_if $l (i32.lt_u (local.get $o) (local.get $rows)))))`);
  // R rows per pass; mask u32 per chunk, bytes extracted by shifts (or byte loads)
  for (const R of [4]) for (const byteLoads of [0]) {
    const name = `sp${R}${byteLoads ? "b" : "w"}`;
    const locs: string[] = [];
    for (let r = 0; r < R; r++) locs.push(`(local $p${r} i32) (local $m${r} i32) (local $b${r} i32) (local $a${r}0 v128) (local $a${r}1 v128)`);
    let body = "";
    for (let k = 0; k < 4; k++) {
      body += `(local.set $x0 (v128.load offset=${32 * k} (local.get $x))) (local.set $x1 (v128.load offset=${32 * k + 16} (local.get $x)))\n`;
      for (let r = 0; r < R; r++) {
        const b = byteLoads
          ? `(i32.load8_u offset=${k} (i32.add (local.get $mp) (i32.mul (local.get $ms) (i32.const ${r}))))`
          : `(i32.and (i32.shr_u (local.get $m${r}) (i32.const ${8 * k})) (i32.const 255))`;
        body += `(local.set $b${r} ${b})
        (local.set $v (i8x16.swizzle (v128.load (local.get $p${r})) (v128.load (i32.add (local.get $table) (i32.shl (local.get $b${r}) (i32.const 4))))))
        (local.set $p${r} (i32.add (local.get $p${r}) (i32.shl (i32.popcnt (local.get $b${r})) (i32.const 1))))
        (local.set $a${r}0 (f32x4.add (local.get $a${r}0) (f32x4.mul (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v)) (local.get $x0))))
        (local.set $a${r}1 (f32x4.add (local.get $a${r}1) (f32x4.mul (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v)) (local.get $x1))))\n`;
      }
    }
    const loadM = byteLoads ? "" : Array.from({ length: R }, (_, r) => `(local.set $m${r} (i32.load (i32.add (local.get $mp) (i32.mul (local.get $ms) (i32.const ${r})))))`).join("\n");
    L.push(`(func (export "${name}") (param $masks i32) (param $rowPtr i32) (param $vals i32) (param $x0p i32) (param $out i32) (param $rows i32) (param $nc i32) (param $table i32)
      (local $o i32) (local $mp i32) (local $mEnd i32) (local $ms i32) (local $x i32) (local $v v128) (local $zero v128) (local $x0 v128) (local $x1 v128) ${locs.join(" ")}
      (local.set $ms (i32.shl (local.get $nc) (i32.const 2)))
      (loop $ol
        (local.set $mp (i32.add (local.get $masks) (i32.mul (local.get $o) (local.get $ms))))
        (local.set $mEnd (i32.add (local.get $mp) (local.get $ms)))
        ${Array.from({ length: R }, (_, r) => `(local.set $p${r} (i32.add (local.get $vals) (i32.shl (i32.load offset=${4 * r} (i32.add (local.get $rowPtr) (i32.shl (local.get $o) (i32.const 2)))) (i32.const 1))))
          (local.set $a${r}0 (local.get $zero)) (local.set $a${r}1 (local.get $zero))`).join("\n")}
        (local.set $x (local.get $x0p))
        (loop $l
          ${loadM}
          ${body}
          (local.set $x (i32.add (local.get $x) (i32.const 128)))
          (local.set $mp (i32.add (local.get $mp) (i32.const 4)))
          (br_if $l (i32.lt_u (local.get $mp) (local.get $mEnd))))
        ${Array.from({ length: R }, (_, r) => `(f32.store offset=${4 * r} (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2))) (call $hsum (f32x4.add (local.get $a${r}0) (local.get $a${r}1))))`).join("\n")}
        (local.set $o (i32.add (local.get $o) (i32.const ${R}))) (br_if $ol (i32.lt_u (local.get $o) (local.get $rows)))))`);
  }

  // sp1m: as sp1u, but the pattern offsets come from the mask word in a register: (m >> (8k - 4)) & 0xff0
  // is byte k times 16, and has the byte's popcount
  L.push(`(func $sgemv_bf16m (param $mp i32) (param $mEnd i32) (param $p i32) (param $x i32) (param $table i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $b i32) (local $m i32) (local $v v128) (local $zero v128)
    (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
        (local.set $m (i32.load (local.get $mp)))
        ${[0, 1, 2, 3].map((k) => `(local.set $b (i32.and ${k === 0 ? "(i32.shl (local.get $m) (i32.const 4))" : `(i32.shr_u (local.get $m) (i32.const ${8 * k - 4}))`} (i32.const 0xff0)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p)) (v128.load (i32.add (local.get $table) (local.get $b)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v)) (v128.load offset=${32 * k} (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v)) (v128.load offset=${32 * k + 16} (local.get $x)))))`).join("\n")}
        (local.set $x (i32.add (local.get $x) (i32.const 128)))
        (local.set $mp (i32.add (local.get $mp) (i32.const 4)))
        (br $l)))
    (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))`);
  // one row, unrolled over the 4 mask bytes of a word
  L.push(`(func $sgemv_bf16u (param $mp i32) (param $mEnd i32) (param $p i32) (param $x i32) (param $table i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $b i32) (local $v v128) (local $zero v128)
    (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
        ${[0,1,2,3].map((k) => `(local.set $b (i32.load8_u offset=${k} (local.get $mp)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p)) (v128.load (i32.add (local.get $table) (i32.shl (local.get $b) (i32.const 4))))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v)) (v128.load offset=${32*k} (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v)) (v128.load offset=${32*k+16} (local.get $x)))))`).join("\n")}
        (local.set $x (i32.add (local.get $x) (i32.const 128)))
        (local.set $mp (i32.add (local.get $mp) (i32.const 4)))
        (br $l)))
    (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))`);
  // set-bit walk, one f32 accumulator in ascending k (the scalar reference's order)
  L.push(`(func $swalk_bf16 (param $mp i32) (param $mEnd i32) (param $p i32) (param $x i32) (param $table i32) (result f32)
    (local $acc f32) (local $m i32)
    (block $done (loop $l
        (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
        (local.set $m (i32.load (local.get $mp)))
        (block $wd (loop $w
          (br_if $wd (i32.eqz (local.get $m)))
          (local.set $acc (f32.add (local.get $acc) (f32.mul
            (f32.reinterpret_i32 (i32.shl (i32.load16_u (local.get $p)) (i32.const 16)))
            (f32.load (i32.add (local.get $x) (i32.shl (i32.ctz (local.get $m)) (i32.const 2)))))))
          (local.set $p (i32.add (local.get $p) (i32.const 2)))
          (local.set $m (i32.and (local.get $m) (i32.sub (local.get $m) (i32.const 1))))
          (br $w)))
        (local.set $x (i32.add (local.get $x) (i32.const 128)))
        (local.set $mp (i32.add (local.get $mp) (i32.const 4)))
        (br $l)))
    (local.get $acc))`);
  for (const [nm, fn] of [["sp1u", "$sgemv_bf16u"], ["sp1m", "$sgemv_bf16m"], ["walk", "$swalk_bf16"]])
  L.push(`(func (export "${nm}") (param $masks i32) (param $rowPtr i32) (param $vals i32) (param $x i32) (param $out i32) (param $rows i32) (param $nc i32) (param $table i32)
    (local $o i32) (local $mp i32)
    (loop $l
      (local.set $mp (i32.add (local.get $masks) (i32.shl (i32.mul (local.get $o) (local.get $nc)) (i32.const 2))))
      (f32.store (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2)))
        (call ${fn} (local.get $mp) (i32.add (local.get $mp) (i32.shl (local.get $nc) (i32.const 2)))
          (i32.add (local.get $vals) (i32.shl (i32.load (i32.add (local.get $rowPtr) (i32.shl (local.get $o) (i32.const 2)))) (i32.const 1)))
          (local.get $x) (local.get $table)))
      (local.set $o (i32.add (local.get $o) (i32.const 1))) (br_if $l (i32.lt_u (local.get $o) (local.get $rows)))))`);
  if (RELAXED) {
    // relaxed SIMD: dense with fused multiply-adds; sparse with relaxed_swizzle (pshufb without V8's fix-up
    // for indices >= 16; 0x80 still zeroes on x86 and ARM), the table at a constant address (one add less),
    // and with relaxed_madd too
    L.push(`(func (export "denser") (param $w i32) (param $x i32) (param $out i32) (param $rows i32) (param $n i32)
      (local $o i32) (local $a0 v128) (local $a1 v128) (local $end i32) (local $v v128) (local $p i32) (local $xp i32)
      (loop $ol
        (local.set $p (i32.add (local.get $w) (i32.mul (local.get $o) (i32.shl (local.get $n) (i32.const 1)))))
        (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 1))))
        (local.set $xp (local.get $x)) (local.set $a0 (v128.const i32x4 0 0 0 0)) (local.set $a1 (v128.const i32x4 0 0 0 0))
        (loop $l
          (local.set $v (v128.load (local.get $p)))
          (local.set $a0 (f32x4.relaxed_madd (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i32x4 0 0 0 0) (local.get $v)) (v128.load (local.get $xp)) (local.get $a0)))
          (local.set $a1 (f32x4.relaxed_madd (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i32x4 0 0 0 0) (local.get $v)) (v128.load offset=16 (local.get $xp)) (local.get $a1)))
          (local.set $p (i32.add (local.get $p) (i32.const 16))) (local.set $xp (i32.add (local.get $xp) (i32.const 32)))
          (br_if $l (i32.lt_u (local.get $p) (local.get $end))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2))) (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))
        (local.set $o (i32.add (local.get $o) (i32.const 1))) (br_if $ol (i32.lt_u (local.get $o) (local.get $rows)))))`);
    // sp2r: sp1r over two output rows per pass (rows o and o + 1), sharing the activation loads
    {
      const half = (r: number, k: number) => `(local.set $b (i32.load8_u offset=${k} (local.get $mp${r})))
            (local.set $v (i8x16.relaxed_swizzle (v128.load (local.get $p${r})) (v128.load offset=${TABLE} (i32.shl (local.get $b) (i32.const 4)))))
            (local.set $p${r} (i32.add (local.get $p${r}) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
            (local.set $a${r}0 (f32x4.add (local.get $a${r}0) (f32x4.mul (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v)) (local.get $x0))))
            (local.set $a${r}1 (f32x4.add (local.get $a${r}1) (f32x4.mul (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v)) (local.get $x1))))`;
      L.push(`(func (export "sp2r") (param $masks i32) (param $rowPtr i32) (param $vals i32) (param $xb i32) (param $out i32) (param $rows i32) (param $nc i32) (param $table i32)
        (local $o i32) (local $mp0 i32) (local $mp1 i32) (local $mEnd i32) (local $p0 i32) (local $p1 i32) (local $x i32) (local $b i32)
        (local $a00 v128) (local $a01 v128) (local $a10 v128) (local $a11 v128) (local $v v128) (local $zero v128) (local $x0 v128) (local $x1 v128)
        (loop $ol
          (local.set $mp0 (i32.add (local.get $masks) (i32.shl (i32.mul (local.get $o) (local.get $nc)) (i32.const 2))))
          (local.set $mp1 (i32.add (local.get $mp0) (i32.shl (local.get $nc) (i32.const 2))))
          (local.set $mEnd (local.get $mp1))
          (local.set $p0 (i32.add (local.get $vals) (i32.shl (i32.load (i32.add (local.get $rowPtr) (i32.shl (local.get $o) (i32.const 2)))) (i32.const 1))))
          (local.set $p1 (i32.add (local.get $vals) (i32.shl (i32.load offset=4 (i32.add (local.get $rowPtr) (i32.shl (local.get $o) (i32.const 2)))) (i32.const 1))))
          (local.set $a00 (local.get $zero)) (local.set $a01 (local.get $zero)) (local.set $a10 (local.get $zero)) (local.set $a11 (local.get $zero))
          (local.set $x (local.get $xb))
          (loop $l
            ${[0, 1, 2, 3].map((k) => `(local.set $x0 (v128.load offset=${32 * k} (local.get $x))) (local.set $x1 (v128.load offset=${32 * k + 16} (local.get $x)))
            ${half(0, k)}
            ${half(1, k)}`).join("\n")}
            (local.set $x (i32.add (local.get $x) (i32.const 128)))
            (local.set $mp0 (i32.add (local.get $mp0) (i32.const 4))) (local.set $mp1 (i32.add (local.get $mp1) (i32.const 4)))
            (br_if $l (i32.lt_u (local.get $mp0) (local.get $mEnd))))
          (f32.store (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2))) (call $hsum (f32x4.add (local.get $a00) (local.get $a01))))
          (f32.store offset=4 (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2))) (call $hsum (f32x4.add (local.get $a10) (local.get $a11))))
          (local.set $o (i32.add (local.get $o) (i32.const 2))) (br_if $ol (i32.lt_u (local.get $o) (local.get $rows)))))`);
    }
    for (const [nm, madd, constTable, words] of [["sp1r", false, true, 1], ["sp1rm", true, true, 1], ["sp1rv", false, false, 1], ["sp1r2", false, true, 2]] as const) {
      const acc = (a: string, lane: string, xo: number) => madd
        ? `(local.set ${a} (f32x4.relaxed_madd ${lane} (v128.load offset=${xo} (local.get $x)) (local.get ${a})))`
        : `(local.set ${a} (f32x4.add (local.get ${a}) (f32x4.mul ${lane} (v128.load offset=${xo} (local.get $x)))))`;
      L.push(`(func $${nm} (param $mp i32) (param $mEnd i32) (param $p i32) (param $x i32) (param $table i32) (result f32)
        (local $a0 v128) (local $a1 v128) (local $b i32) (local $v v128) (local $zero v128)
        (block $done (loop $l
            (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
            ${Array.from({ length: 4 * words }, (_, k) => k).map((k) => `(local.set $b (i32.load8_u offset=${k} (local.get $mp)))
            (local.set $v (i8x16.relaxed_swizzle (v128.load (local.get $p)) ${constTable ? `(v128.load offset=${TABLE} (i32.shl (local.get $b) (i32.const 4)))` : "(v128.load (i32.add (local.get $table) (i32.shl (local.get $b) (i32.const 4))))"}))
            (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
            ${acc("$a0", "(i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v))", 32 * k)}
            ${acc("$a1", "(i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v))", 32 * k + 16)}`).join("\n")}
            (local.set $x (i32.add (local.get $x) (i32.const ${128 * words})))
            (local.set $mp (i32.add (local.get $mp) (i32.const ${4 * words})))
            (br $l)))
        (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))`);
      L.push(`(func (export "${nm}") (param $masks i32) (param $rowPtr i32) (param $vals i32) (param $x i32) (param $out i32) (param $rows i32) (param $nc i32) (param $table i32)
        (local $o i32) (local $mp i32)
        (loop $l
          (local.set $mp (i32.add (local.get $masks) (i32.shl (i32.mul (local.get $o) (local.get $nc)) (i32.const 2))))
          (f32.store (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2)))
            (call $${nm} (local.get $mp) (i32.add (local.get $mp) (i32.shl (local.get $nc) (i32.const 2)))
              (i32.add (local.get $vals) (i32.shl (i32.load (i32.add (local.get $rowPtr) (i32.shl (local.get $o) (i32.const 2)))) (i32.const 1)))
              (local.get $x) (local.get $table)))
          (local.set $o (i32.add (local.get $o) (i32.const 1))) (br_if $l (i32.lt_u (local.get $o) (local.get $rows)))))`);
    }
  }
  L.push(")");
  return L.join("\n");
}

const args = process.argv.slice(2);
const RELAXED = args.includes("--relaxed");
/** where the swizzle table goes (the first allocation), a constant in the relaxed variants */
const TABLE = 1 << 16;
if (RELAXED) v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
const shapeArg = args[args.indexOf("--shape") + 1];
const [N, K] = (args.includes("--shape") && shapeArg ? shapeArg : "1376x512").split("x").map(Number) as [number, number];
const wabt = (await (createRequire(import.meta.url)("wabt") as () => Promise<Wabt>)());
const bin = wabt.parseWat("variants.wat", wat(), { simd: true, threads: true, relaxed_simd: RELAXED }).toBinary({}).buffer;
const memory = new WebAssembly.Memory({ initial: 16384, maximum: 65536, shared: true });
const k = (await WebAssembly.instantiate(new WebAssembly.Module(new Uint8Array(bin)), { env: { memory } })).exports as unknown as Exports;
const u8 = new Uint8Array(memory.buffer);
let top = 1 << 16;
const alloc = (n: number) => { const a = top; top += (n + 63) & ~63; return a; };
const table = alloc(4352);
if (table !== TABLE) throw new Error("the swizzle table must be the first allocation");
u8.set(sparseSwizzleTable(), table);
const x = alloc(K * 4);
const xf = new Float32Array(memory.buffer, x, K);
for (let i = 0; i < K; i++) xf[i] = Math.random() * 2 - 1;
const out = alloc(N * 4 + 64);
const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1]!;
const w = new Float32Array(N * K);
for (let i = 0; i < w.length; i++) w[i] = Math.random() * 2 - 1;
const SPARSE = ["sp1", "sp1u", "sp1m", "sp4w", "walk", ...(RELAXED ? ["sp1r", "sp1rv", "sp1r2", "sp1rm", "sp2r"] : [])];
console.log(`bf16 GEMV variants, ${N}x${K}, 1 thread, CPU time; speed relative to the dense bf16 kernel (higher is faster)`);
for (const cold of [false, true]) {
  for (const s of [0.5, 0.7, 0.9]) {
    const mask = pruneMask(w, N, K, s);
    const bits = new Uint16Array(N * K);
    for (let i = 0; i < bits.length; i++) bits[i] = mask[i] ? 0 : f32ToBf16(w[i]!);
    const sp = packSparse("bf16", N, K, bits);
    const copies = cold ? Math.ceil(64e6 / (N * K * 2)) : 1;
    const dense: number[] = [], sps: number[] = [];
    for (let c = 0; c < copies; c++) {
      const d = alloc(N * K * 2);
      u8.set(new Uint8Array(bits.buffer), d);
      dense.push(d);
      const q = alloc(sp.byteLength);
      u8.set(sp, q);
      sps.push(q);
    }
    const l = sparseLayout("bf16", N, K, new Uint32Array(sp.buffer, 0, 1)[0]!);
    const variants: Record<string, (i: number) => unknown> = { dense: (i) => k.dense!(dense[i]!, x, out, N, K), read: (i) => k.read!(dense[i]!, N * K * 2) };
    if (RELAXED) variants.denser = (i) => k.denser!(dense[i]!, x, out, N, K);
    for (const v of SPARSE) variants[v] = (i) => k[v]!(sps[i]! + l.masks, sps[i]! + l.rowPtr, sps[i]! + l.values, x, out, N, l.nChunks, table);
    k.dense!(dense[0]!, x, out, N, K);
    const ref = new Float32Array(memory.buffer, out, N).slice();
    for (const v of [...SPARSE, ...(RELAXED ? ["denser"] : [])]) {
      variants[v]!(0);
      const y = new Float32Array(memory.buffer, out, N);
      for (let o = 0; o < N; o++) {
        const ok = v === "walk" || v === "sp1rm" || v === "denser" ? Math.abs(y[o]! - ref[o]!) <= 1e-5 * (1 + Math.abs(ref[o]!)) : y[o] === ref[o];
        if (!ok) throw new Error(`${v}: row ${o} gives ${y[o]}, the dense kernel ${ref[o]}`);
      }
    }
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((n) => [n, []]));
    const calls = Math.max(copies * 4, 200);
    for (let r = 0; r < 15; r++) {
      for (const [n, f] of Object.entries(variants)) {
        f(0);
        const t0 = process.cpuUsage();
        for (let i = 0; i < calls; i++) f(i % copies);
        const dt = process.cpuUsage(t0);
        times[n]!.push((dt.user + dt.system) / 1e3 / calls);
      }
    }
    const d = med(times.dense!);
    console.log(`${cold ? "cold" : "hot "} s=${(s * 100).toFixed(0)}% | dense ${(d * 1e3).toFixed(1)} us ${((N * K * 2) / d / 1e6).toFixed(1)} GB/s | ` +
      Object.keys(variants).filter((n) => n !== "dense").map((n) => `${n} x${(d / med(times[n]!)).toFixed(2)}`).join("  ") +
      ` | sparse bytes / dense ${(sp.byteLength / (N * K * 2)).toFixed(3)}`);
  }
}
