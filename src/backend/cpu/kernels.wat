;; Kernels of the CPU backend: matmul (out[r, o] = sum_i x[r, i] * W[o, i]) for every weight format,
;; causal attention, and two elementwise ops (rmsnorm, silu * up).
;;
;; The module imports the arena's shared memory, so the main thread and every worker run these kernels over
;; the same bytes. A job is described in a small control block (layout: CTRL in worker-pool.ts); `run`
;; claims chunks of output features with an atomic counter until none are left, so threads that start late
;; (a worker waking up) simply take fewer chunks, and the caller never waits for a worker that took none.
;;
;; Two activation paths for q8_0/q4_0:
;;  - f32 ("exact"): activations stay f32; weights are decoded to f32 in registers. Differs from the
;;    reference only by f32 summation order. (f32, f16 and bf16 weights always take this path.)
;;  - int8 (kinds 5, 6): each 32-block of an activation row is quantized once per matmul to int8
;;    (scale = amax / 127, as llama.cpp's q8_0) and dotted with the weight's integers by i32x4.dot_i16x8_s;
;;    one f32 multiply per block applies both scales. About twice as fast; see wasm-matmul.ts.
;;
;; The block formats read activations in a per-block permuted order that matches how weight bytes unpack
;; from 16-bit lanes without byte shuffles: [x0 x2 .. x14 | x1 x3 .. x15 | x16 x18 .. x30 | x17 .. x31].
;; `prep_f32` and `quant_i8` write that order.
;;
;; Notes on V8 (TurboFan) that shaped the code: it does not inline calls in hot loops (they spill every
;; vector register), it rebuilds v128 constants inside loops (hence masks passed as parameters), and it
;; hoists every load of a long loop body to its top (hence short bodies: four rows of one block).
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; kinds
  ;; 0 f32, 1 f16, 2 bf16, 3 q8_0 (f32 x), 4 q4_0 (f32 x), 5 q8_0 (int8 x), 6 q4_0 (int8 x), 7 attention,
  ;; 8 sparse-f32, 9 sparse-f16, 10 sparse-bf16
  ;; (for attention, outF is the item count rows * heads; see $attend)

  ;; control block byte offsets (CTRL in worker-pool.ts)
  ;;   64 chunks done (atomic)   128 job tag << 12 | next chunk (atomic)
  ;;   192 kind   196 w   200 x   204 xs   208 out   212 inF   216 outF   220 rows   224 chunk   228 nChunks
  ;;   232 scratch (thread t's at scratch + t * stride)   236 stride   240 f16 -> f32 table (65536 f32)
  ;;   attention: 256 pos0   260 heads   264 kvHeads   268 headDim   272 scale (f32)
  ;; The sparse kinds' swizzle patterns sit at a fixed address of every arena (SPARSE_TABLE_AT = 64 in
  ;; arena.ts; 256 patterns for 16-bit values at 64, 16 per-nibble f32 patterns at 64 + 4096 = 4160), so the
  ;; loads take the address as a constant offset: one add less per 8 weights than a table pointer.

  ;; f16 bits -> f32, exact for zeros, subnormals, normals, infinities and NaN.
  (func $h2f (param $h i32) (result f32)
    (local $m i32)
    (local.set $m (i32.shl (i32.and (local.get $h) (i32.const 0x7fff)) (i32.const 13)))
    (f32.copysign
      (select
        (f32.reinterpret_i32 (i32.or (local.get $m) (i32.const 0x7f800000)))
        (f32.mul (f32.reinterpret_i32 (local.get $m)) (f32.const 0x1p112))
        (i32.eq (i32.and (local.get $h) (i32.const 0x7c00)) (i32.const 0x7c00)))
      (f32.reinterpret_i32 (i32.shl (local.get $h) (i32.const 16)))))

  (func $hsum (param $v v128) (result f32)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
      (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))

  ;; ---------------------------------------------------------------------------------------------
  ;; f32 weights: dot of n floats at w and x.
  (func $dot_f32 (param $w i32) (param $x i32) (param $n i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $end i32) (local $s f32)
    (local.set $end (i32.add (local.get $w) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $a0 (f32x4.add (local.get $a0)
          (f32x4.mul (v128.load (local.get $w)) (v128.load (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1)
          (f32x4.mul (v128.load offset=16 (local.get $w)) (v128.load offset=16 (local.get $x)))))
        (local.set $w (i32.add (local.get $w) (i32.const 32)))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (br $l)))
    (local.set $s (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))
    (local.set $end (i32.add (local.get $w) (i32.shl (i32.and (local.get $n) (i32.const 7)) (i32.const 2))))
    (block $done2
      (loop $t
        (br_if $done2 (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $s (f32.add (local.get $s) (f32.mul (f32.load (local.get $w)) (f32.load (local.get $x)))))
        (local.set $w (i32.add (local.get $w) (i32.const 4)))
        (local.set $x (i32.add (local.get $x) (i32.const 4)))
        (br $t)))
    (local.get $s))

  ;; 8 f16 -> f32 at a time, built in 16-bit lanes: the high half of each f32 is sign | exponent | top 7
  ;; mantissa bits (one arithmetic shift and a mask), the low half the last 3 mantissa bits; interleaving
  ;; the halves and one multiply by 2^112 rebiases the exponent (and scales subnormals exactly).
  ;; Infinity/NaN get the all-ones exponent first. The constants live in locals: V8 would rebuild them
  ;; in every iteration otherwise.
  (func $dot_f16 (param $w i32) (param $x i32) (param $n i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $end i32) (local $s f32) (local $v v128) (local $hi v128) (local $lo v128)
    (local $kSignExp v128) (local $kExp v128) (local $kInf v128) (local $k112 v128)
    (local.set $kSignExp (v128.const i16x8 0x8fff 0x8fff 0x8fff 0x8fff 0x8fff 0x8fff 0x8fff 0x8fff))
    (local.set $kExp (v128.const i16x8 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00))
    (local.set $kInf (v128.const i16x8 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80))
    (local.set $k112 (v128.const f32x4 0x1p112 0x1p112 0x1p112 0x1p112))
    (local.set $end (i32.add (local.get $w) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 1))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $v (v128.load (local.get $w)))
        (local.set $hi (v128.or
          (v128.and (i16x8.shr_s (local.get $v) (i32.const 3)) (local.get $kSignExp))
          (v128.and (i16x8.eq (v128.and (local.get $v) (local.get $kExp)) (local.get $kExp)) (local.get $kInf))))
        (local.set $lo (i16x8.shl (local.get $v) (i32.const 13)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (f32x4.mul (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $lo) (local.get $hi)) (local.get $k112))
          (v128.load (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (f32x4.mul (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $lo) (local.get $hi)) (local.get $k112))
          (v128.load offset=16 (local.get $x)))))
        (local.set $w (i32.add (local.get $w) (i32.const 16)))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (br $l)))
    (local.set $s (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))
    (local.set $end (i32.add (local.get $w) (i32.shl (i32.and (local.get $n) (i32.const 7)) (i32.const 1))))
    (block $done2
      (loop $t
        (br_if $done2 (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $s (f32.add (local.get $s) (f32.mul (call $h2f (i32.load16_u (local.get $w))) (f32.load (local.get $x)))))
        (local.set $w (i32.add (local.get $w) (i32.const 2)))
        (local.set $x (i32.add (local.get $x) (i32.const 4)))
        (br $t)))
    (local.get $s))

  ;; bf16 is the top half of an f32: interleave with zero 16-bit lanes.
  (func $dot_bf16 (param $w i32) (param $x i32) (param $n i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $end i32) (local $s f32) (local $v v128)
    (local.set $end (i32.add (local.get $w) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 1))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $v (v128.load (local.get $w)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (v128.const i32x4 0 0 0 0) (local.get $v))
          (v128.load (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (v128.const i32x4 0 0 0 0) (local.get $v))
          (v128.load offset=16 (local.get $x)))))
        (local.set $w (i32.add (local.get $w) (i32.const 16)))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (br $l)))
    (local.set $s (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))
    (local.set $end (i32.add (local.get $w) (i32.shl (i32.and (local.get $n) (i32.const 7)) (i32.const 1))))
    (block $done2
      (loop $t
        (br_if $done2 (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $s (f32.add (local.get $s) (f32.mul
          (f32.reinterpret_i32 (i32.shl (i32.load16_u (local.get $w)) (i32.const 16)))
          (f32.load (local.get $x)))))
        (local.set $w (i32.add (local.get $w) (i32.const 2)))
        (local.set $x (i32.add (local.get $x) (i32.const 4)))
        (br $t)))
    (local.get $s))

  ;; ---------------------------------------------------------------------------------------------
  ;; Block formats, f32 activations in the permuted block order. `nb` blocks of 32.
  (func $dot_q8_f32 (param $w i32) (param $x i32) (param $nb i32) (result f32)
    (local $acc v128) (local $b v128) (local $v v128) (local $e v128) (local $o v128) (local $end i32) (local $h i32) (local $m i32)
    (local.set $end (i32.add (local.get $w) (i32.mul (local.get $nb) (i32.const 34))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $v (v128.load offset=2 align=1 (local.get $w)))
        (local.set $e (i16x8.shr_s (i16x8.shl (local.get $v) (i32.const 8)) (i32.const 8)))
        (local.set $o (i16x8.shr_s (local.get $v) (i32.const 8)))
        (local.set $b (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $e))) (v128.load (local.get $x))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $e))) (v128.load offset=16 (local.get $x)))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $o))) (v128.load offset=32 (local.get $x)))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $o))) (v128.load offset=48 (local.get $x)))))
        (local.set $v (v128.load offset=18 align=1 (local.get $w)))
        (local.set $e (i16x8.shr_s (i16x8.shl (local.get $v) (i32.const 8)) (i32.const 8)))
        (local.set $o (i16x8.shr_s (local.get $v) (i32.const 8)))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $e))) (v128.load offset=64 (local.get $x)))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $e))) (v128.load offset=80 (local.get $x)))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $o))) (v128.load offset=96 (local.get $x)))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $o))) (v128.load offset=112 (local.get $x)))))
        (local.set $acc (f32x4.add (local.get $acc)
          (f32x4.mul (local.get $b) (f32x4.splat (f32.copysign
            (select
              (f32.reinterpret_i32 (i32.or (local.tee $m (i32.shl (i32.and (local.tee $h (i32.load16_u (local.get $w))) (i32.const 0x7fff)) (i32.const 13))) (i32.const 0x7f800000)))
              (f32.mul (f32.reinterpret_i32 (local.get $m)) (f32.const 0x1p112))
              (i32.eq (i32.and (local.get $h) (i32.const 0x7c00)) (i32.const 0x7c00)))
            (f32.reinterpret_i32 (i32.shl (local.get $h) (i32.const 16))))))))
        (local.set $w (i32.add (local.get $w) (i32.const 34)))
        (local.set $x (i32.add (local.get $x) (i32.const 128)))
        (br $l)))
    (call $hsum (local.get $acc)))

  ;; q4_0: flipping each nibble's top bit (xor 0x88) turns n into the 4-bit two's complement of n - 8, so
  ;; shifting it to the top of a 16-bit lane and back arithmetically yields n - 8 directly.
  (func $dot_q4_f32 (param $w i32) (param $x i32) (param $nb i32) (result f32)
    (local $acc v128) (local $b v128) (local $v v128) (local $p v128) (local $end i32) (local $h i32) (local $m i32)
    (local $k88 v128)
    (local.set $k88 (v128.const i32x4 0x88888888 0x88888888 0x88888888 0x88888888))
    (local.set $end (i32.add (local.get $w) (i32.mul (local.get $nb) (i32.const 18))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        (local.set $v (v128.xor (v128.load offset=2 align=1 (local.get $w)) (local.get $k88)))
        ;; elements 0, 2, .. 14: bits 3..0
        (local.set $p (i16x8.shr_s (i16x8.shl (local.get $v) (i32.const 12)) (i32.const 12)))
        (local.set $b (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $p))) (v128.load (local.get $x))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $p))) (v128.load offset=16 (local.get $x)))))
        ;; elements 1, 3, .. 15: bits 11..8
        (local.set $p (i16x8.shr_s (i16x8.shl (local.get $v) (i32.const 4)) (i32.const 12)))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $p))) (v128.load offset=32 (local.get $x)))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $p))) (v128.load offset=48 (local.get $x)))))
        ;; elements 16, 18, .. 30: bits 7..4
        (local.set $p (i16x8.shr_s (i16x8.shl (local.get $v) (i32.const 8)) (i32.const 12)))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $p))) (v128.load offset=64 (local.get $x)))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $p))) (v128.load offset=80 (local.get $x)))))
        ;; elements 17, 19, .. 31: bits 15..12
        (local.set $p (i16x8.shr_s (local.get $v) (i32.const 12)))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $p))) (v128.load offset=96 (local.get $x)))))
        (local.set $b (f32x4.add (local.get $b) (f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $p))) (v128.load offset=112 (local.get $x)))))
        (local.set $acc (f32x4.add (local.get $acc)
          (f32x4.mul (local.get $b) (f32x4.splat (f32.copysign
            (select
              (f32.reinterpret_i32 (i32.or (local.tee $m (i32.shl (i32.and (local.tee $h (i32.load16_u (local.get $w))) (i32.const 0x7fff)) (i32.const 13))) (i32.const 0x7f800000)))
              (f32.mul (f32.reinterpret_i32 (local.get $m)) (f32.const 0x1p112))
              (i32.eq (i32.and (local.get $h) (i32.const 0x7c00)) (i32.const 0x7c00)))
            (f32.reinterpret_i32 (i32.shl (local.get $h) (i32.const 16))))))))
        (local.set $w (i32.add (local.get $w) (i32.const 18)))
        (local.set $x (i32.add (local.get $x) (i32.const 128)))
        (br $l)))
    (call $hsum (local.get $acc)))

  ;; ---------------------------------------------------------------------------------------------
  ;; Block formats, int8 activations: xq holds 32 int16 per block (values in [-127, 127], permuted order;
  ;; for q4_0 pre-multiplied per part, plus a correction, see quant_i8), xs one f32 scale per block. Four
  ;; weight rows at a time share the activation loads; each stores its dot product at its out pointer
  ;; (rows past the end repeat the last one). Weight bytes become 16-bit lanes by one shift or mask
  ;; each, which leaves every product 256 times too large; one exact arithmetic shift per block undoes it
  ;; (q4_0's sums stay below 2^24, so they convert exactly as they are; its activation scales carry 2^-8).
  ;; Masks come as parameters: V8 rebuilds a constant (or anything computed from one) in every iteration.
  ;; The f16 weight scale is looked up in a 65536-entry f32 table at $f16 (built by the engine from
  ;; the exact decoder): far fewer instructions than decoding it, and a model's scales span few entries.
  (func $dot4_q8_i8 (param $w0 i32) (param $w1 i32) (param $w2 i32) (param $w3 i32) (param $xq i32) (param $xs i32) (param $nb i32) (param $out0 i32) (param $out1 i32) (param $out2 i32) (param $out3 i32) (param $f16 i32)
    (param $kHi v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128) (local $s v128) (local $v v128) (local $end i32) (local $dx f32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128) (local $corr v128)
    (local.set $end (i32.add (local.get $w0) (i32.mul (local.get $nb) (i32.const 34))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $w0) (local.get $end)))
        (local.set $dx (f32.load (local.get $xs)))
        (local.set $x0 (v128.load (local.get $xq)))
        (local.set $x1 (v128.load offset=16 (local.get $xq)))
        (local.set $x2 (v128.load offset=32 (local.get $xq)))
        (local.set $x3 (v128.load offset=48 (local.get $xq)))
        (local.set $v (v128.load offset=2 align=1 (local.get $w0)))
        (local.set $s (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.shl (local.get $v) (i32.const 8)) (local.get $x0))
          (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kHi)) (local.get $x1))))
        (local.set $v (v128.load offset=18 align=1 (local.get $w0)))
        (local.set $s (i32x4.add (local.get $s) (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.shl (local.get $v) (i32.const 8)) (local.get $x2))
          (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kHi)) (local.get $x3)))))
        (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.shr_s (local.get $s) (i32.const 8))) (f32x4.splat (f32.mul (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w0)) (i32.const 2)))) (local.get $dx))))))
        (local.set $v (v128.load offset=2 align=1 (local.get $w1)))
        (local.set $s (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.shl (local.get $v) (i32.const 8)) (local.get $x0))
          (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kHi)) (local.get $x1))))
        (local.set $v (v128.load offset=18 align=1 (local.get $w1)))
        (local.set $s (i32x4.add (local.get $s) (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.shl (local.get $v) (i32.const 8)) (local.get $x2))
          (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kHi)) (local.get $x3)))))
        (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.shr_s (local.get $s) (i32.const 8))) (f32x4.splat (f32.mul (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w1)) (i32.const 2)))) (local.get $dx))))))
        (local.set $v (v128.load offset=2 align=1 (local.get $w2)))
        (local.set $s (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.shl (local.get $v) (i32.const 8)) (local.get $x0))
          (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kHi)) (local.get $x1))))
        (local.set $v (v128.load offset=18 align=1 (local.get $w2)))
        (local.set $s (i32x4.add (local.get $s) (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.shl (local.get $v) (i32.const 8)) (local.get $x2))
          (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kHi)) (local.get $x3)))))
        (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.shr_s (local.get $s) (i32.const 8))) (f32x4.splat (f32.mul (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w2)) (i32.const 2)))) (local.get $dx))))))
        (local.set $v (v128.load offset=2 align=1 (local.get $w3)))
        (local.set $s (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.shl (local.get $v) (i32.const 8)) (local.get $x0))
          (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kHi)) (local.get $x1))))
        (local.set $v (v128.load offset=18 align=1 (local.get $w3)))
        (local.set $s (i32x4.add (local.get $s) (i32x4.add
          (i32x4.dot_i16x8_s (i16x8.shl (local.get $v) (i32.const 8)) (local.get $x2))
          (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kHi)) (local.get $x3)))))
        (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.shr_s (local.get $s) (i32.const 8))) (f32x4.splat (f32.mul (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w3)) (i32.const 2)))) (local.get $dx))))))
        (local.set $w0 (i32.add (local.get $w0) (i32.const 34)))
        (local.set $w1 (i32.add (local.get $w1) (i32.const 34)))
        (local.set $w2 (i32.add (local.get $w2) (i32.const 34)))
        (local.set $w3 (i32.add (local.get $w3) (i32.const 34)))
        (local.set $xq (i32.add (local.get $xq) (i32.const 64)))
        (local.set $xs (i32.add (local.get $xs) (i32.const 4)))
        (br $l)))
    (f32.store (local.get $out0) (call $hsum (local.get $acc0)))
    (f32.store (local.get $out1) (call $hsum (local.get $acc1)))
    (f32.store (local.get $out2) (call $hsum (local.get $acc2)))
    (f32.store (local.get $out3) (call $hsum (local.get $acc3))))

  (func $dot4_q4_i8 (param $w0 i32) (param $w1 i32) (param $w2 i32) (param $w3 i32) (param $xq i32) (param $xs i32) (param $nb i32) (param $out0 i32) (param $out1 i32) (param $out2 i32) (param $out3 i32) (param $f16 i32)
    (param $kA v128) (param $kB v128) (param $kC v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128) (local $s v128) (local $v v128) (local $end i32) (local $dx f32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128) (local $corr v128)
    (local.set $end (i32.add (local.get $w0) (i32.mul (local.get $nb) (i32.const 18))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $w0) (local.get $end)))
        (local.set $dx (f32.load (local.get $xs)))
        (local.set $x0 (v128.load (local.get $xq)))
        (local.set $x1 (v128.load offset=16 (local.get $xq)))
        (local.set $x2 (v128.load offset=32 (local.get $xq)))
        (local.set $x3 (v128.load offset=48 (local.get $xq)))
        (local.set $corr (v128.load offset=64 (local.get $xq)))
        (local.set $v (v128.load offset=2 align=1 (local.get $w0)))
        (local.set $s (i32x4.add
          (i32x4.add
            (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kA)) (local.get $x0))
            (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kB)) (local.get $x1)))
          (i32x4.add
            (i32x4.add
              (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kC)) (local.get $x2))
              (i32x4.dot_i16x8_s (i16x8.shr_u (local.get $v) (i32.const 12)) (local.get $x3)))
            (local.get $corr))))
        (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul
          (f32x4.convert_i32x4_s (local.get $s)) (f32x4.splat (f32.mul (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w0)) (i32.const 2)))) (local.get $dx))))))
        (local.set $v (v128.load offset=2 align=1 (local.get $w1)))
        (local.set $s (i32x4.add
          (i32x4.add
            (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kA)) (local.get $x0))
            (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kB)) (local.get $x1)))
          (i32x4.add
            (i32x4.add
              (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kC)) (local.get $x2))
              (i32x4.dot_i16x8_s (i16x8.shr_u (local.get $v) (i32.const 12)) (local.get $x3)))
            (local.get $corr))))
        (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul
          (f32x4.convert_i32x4_s (local.get $s)) (f32x4.splat (f32.mul (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w1)) (i32.const 2)))) (local.get $dx))))))
        (local.set $v (v128.load offset=2 align=1 (local.get $w2)))
        (local.set $s (i32x4.add
          (i32x4.add
            (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kA)) (local.get $x0))
            (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kB)) (local.get $x1)))
          (i32x4.add
            (i32x4.add
              (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kC)) (local.get $x2))
              (i32x4.dot_i16x8_s (i16x8.shr_u (local.get $v) (i32.const 12)) (local.get $x3)))
            (local.get $corr))))
        (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul
          (f32x4.convert_i32x4_s (local.get $s)) (f32x4.splat (f32.mul (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w2)) (i32.const 2)))) (local.get $dx))))))
        (local.set $v (v128.load offset=2 align=1 (local.get $w3)))
        (local.set $s (i32x4.add
          (i32x4.add
            (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kA)) (local.get $x0))
            (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kB)) (local.get $x1)))
          (i32x4.add
            (i32x4.add
              (i32x4.dot_i16x8_s (v128.and (local.get $v) (local.get $kC)) (local.get $x2))
              (i32x4.dot_i16x8_s (i16x8.shr_u (local.get $v) (i32.const 12)) (local.get $x3)))
            (local.get $corr))))
        (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul
          (f32x4.convert_i32x4_s (local.get $s)) (f32x4.splat (f32.mul (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w3)) (i32.const 2)))) (local.get $dx))))))
        (local.set $w0 (i32.add (local.get $w0) (i32.const 18)))
        (local.set $w1 (i32.add (local.get $w1) (i32.const 18)))
        (local.set $w2 (i32.add (local.get $w2) (i32.const 18)))
        (local.set $w3 (i32.add (local.get $w3) (i32.const 18)))
        (local.set $xq (i32.add (local.get $xq) (i32.const 80)))
        (local.set $xs (i32.add (local.get $xs) (i32.const 4)))
        (br $l)))
    (f32.store (local.get $out0) (call $hsum (local.get $acc0)))
    (f32.store (local.get $out1) (call $hsum (local.get $acc1)))
    (f32.store (local.get $out2) (call $hsum (local.get $acc2)))
    (f32.store (local.get $out3) (call $hsum (local.get $acc3))))

  ;; The GEMM (prefill) shape: one weight row against a group of four activation rows whose blocks and
  ;; scales quant_i8 interleaved ([row 0 block b | row 1 block b | ...], scales likewise), so one pointer
  ;; walks all four and one vector holds their scales. The row's blocks are unpacked once for the four.
  ;; Same arithmetic as $dot4_*, bit for bit. Outputs go to out + k * ostride.
  (func $gemm4_q8_i8 (param $w i32) (param $xg i32) (param $sg i32) (param $nb i32) (param $out i32) (param $ostride i32) (param $f16 i32)
    (param $kHi v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (local $a v128) (local $b v128) (local $c v128) (local $d v128) (local $v v128) (local $d4 v128) (local $end i32)
    (local.set $end (i32.add (local.get $w) (i32.mul (local.get $nb) (i32.const 34))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        ;; the four rows' scales: weight scale times each activation row's
        (local.set $d4 (f32x4.mul (v128.load (local.get $sg))
          (v128.load32_splat (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w)) (i32.const 2))))))
        (local.set $v (v128.load offset=2 align=1 (local.get $w)))
        (local.set $a (i16x8.shl (local.get $v) (i32.const 8)))
        (local.set $b (v128.and (local.get $v) (local.get $kHi)))
        (local.set $v (v128.load offset=18 align=1 (local.get $w)))
        (local.set $c (i16x8.shl (local.get $v) (i32.const 8)))
        (local.set $d (v128.and (local.get $v) (local.get $kHi)))
        (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.add
              (i32x4.add (i32x4.dot_i16x8_s (local.get $a) (v128.load offset=0 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $b) (v128.load offset=16 (local.get $xg))))
              (i32x4.add (i32x4.dot_i16x8_s (local.get $c) (v128.load offset=32 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $d) (v128.load offset=48 (local.get $xg))))) (i32.const 8)))
          (i8x16.shuffle 0 1 2 3 0 1 2 3 0 1 2 3 0 1 2 3 (local.get $d4) (local.get $d4)))))
        (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.add
              (i32x4.add (i32x4.dot_i16x8_s (local.get $a) (v128.load offset=64 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $b) (v128.load offset=80 (local.get $xg))))
              (i32x4.add (i32x4.dot_i16x8_s (local.get $c) (v128.load offset=96 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $d) (v128.load offset=112 (local.get $xg))))) (i32.const 8)))
          (i8x16.shuffle 4 5 6 7 4 5 6 7 4 5 6 7 4 5 6 7 (local.get $d4) (local.get $d4)))))
        (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.add
              (i32x4.add (i32x4.dot_i16x8_s (local.get $a) (v128.load offset=128 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $b) (v128.load offset=144 (local.get $xg))))
              (i32x4.add (i32x4.dot_i16x8_s (local.get $c) (v128.load offset=160 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $d) (v128.load offset=176 (local.get $xg))))) (i32.const 8)))
          (i8x16.shuffle 8 9 10 11 8 9 10 11 8 9 10 11 8 9 10 11 (local.get $d4) (local.get $d4)))))
        (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.shr_s (i32x4.add
              (i32x4.add (i32x4.dot_i16x8_s (local.get $a) (v128.load offset=192 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $b) (v128.load offset=208 (local.get $xg))))
              (i32x4.add (i32x4.dot_i16x8_s (local.get $c) (v128.load offset=224 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $d) (v128.load offset=240 (local.get $xg))))) (i32.const 8)))
          (i8x16.shuffle 12 13 14 15 12 13 14 15 12 13 14 15 12 13 14 15 (local.get $d4) (local.get $d4)))))
        (local.set $w (i32.add (local.get $w) (i32.const 34)))
        (local.set $xg (i32.add (local.get $xg) (i32.const 256)))
        (local.set $sg (i32.add (local.get $sg) (i32.const 16)))
        (br $l)))
    (f32.store (local.get $out) (call $hsum (local.get $acc0)))
    (f32.store (i32.add (local.get $out) (local.get $ostride)) (call $hsum (local.get $acc1)))
    (f32.store (i32.add (local.get $out) (i32.shl (local.get $ostride) (i32.const 1))) (call $hsum (local.get $acc2)))
    (f32.store (i32.add (local.get $out) (i32.mul (local.get $ostride) (i32.const 3))) (call $hsum (local.get $acc3))))

  (func $gemm4_q4_i8 (param $w i32) (param $xg i32) (param $sg i32) (param $nb i32) (param $out i32) (param $ostride i32) (param $f16 i32)
    (param $kA v128) (param $kB v128) (param $kC v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (local $a v128) (local $b v128) (local $c v128) (local $d v128) (local $v v128) (local $d4 v128) (local $end i32)
    (local.set $end (i32.add (local.get $w) (i32.mul (local.get $nb) (i32.const 18))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $w) (local.get $end)))
        ;; the four rows' scales: weight scale times each activation row's
        (local.set $d4 (f32x4.mul (v128.load (local.get $sg))
          (v128.load32_splat (i32.add (local.get $f16) (i32.shl (i32.load16_u (local.get $w)) (i32.const 2))))))
        (local.set $v (v128.load offset=2 align=1 (local.get $w)))
        (local.set $a (v128.and (local.get $v) (local.get $kA)))
        (local.set $b (v128.and (local.get $v) (local.get $kB)))
        (local.set $c (v128.and (local.get $v) (local.get $kC)))
        (local.set $d (i16x8.shr_u (local.get $v) (i32.const 12)))
        (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.add (i32x4.add
              (i32x4.add (i32x4.dot_i16x8_s (local.get $a) (v128.load offset=0 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $b) (v128.load offset=16 (local.get $xg))))
              (i32x4.add (i32x4.dot_i16x8_s (local.get $c) (v128.load offset=32 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $d) (v128.load offset=48 (local.get $xg)))))
              (v128.load offset=64 (local.get $xg))))
          (i8x16.shuffle 0 1 2 3 0 1 2 3 0 1 2 3 0 1 2 3 (local.get $d4) (local.get $d4)))))
        (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.add (i32x4.add
              (i32x4.add (i32x4.dot_i16x8_s (local.get $a) (v128.load offset=80 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $b) (v128.load offset=96 (local.get $xg))))
              (i32x4.add (i32x4.dot_i16x8_s (local.get $c) (v128.load offset=112 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $d) (v128.load offset=128 (local.get $xg)))))
              (v128.load offset=144 (local.get $xg))))
          (i8x16.shuffle 4 5 6 7 4 5 6 7 4 5 6 7 4 5 6 7 (local.get $d4) (local.get $d4)))))
        (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.add (i32x4.add
              (i32x4.add (i32x4.dot_i16x8_s (local.get $a) (v128.load offset=160 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $b) (v128.load offset=176 (local.get $xg))))
              (i32x4.add (i32x4.dot_i16x8_s (local.get $c) (v128.load offset=192 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $d) (v128.load offset=208 (local.get $xg)))))
              (v128.load offset=224 (local.get $xg))))
          (i8x16.shuffle 8 9 10 11 8 9 10 11 8 9 10 11 8 9 10 11 (local.get $d4) (local.get $d4)))))
        (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul
          (f32x4.convert_i32x4_s (i32x4.add (i32x4.add
              (i32x4.add (i32x4.dot_i16x8_s (local.get $a) (v128.load offset=240 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $b) (v128.load offset=256 (local.get $xg))))
              (i32x4.add (i32x4.dot_i16x8_s (local.get $c) (v128.load offset=272 (local.get $xg))) (i32x4.dot_i16x8_s (local.get $d) (v128.load offset=288 (local.get $xg)))))
              (v128.load offset=304 (local.get $xg))))
          (i8x16.shuffle 12 13 14 15 12 13 14 15 12 13 14 15 12 13 14 15 (local.get $d4) (local.get $d4)))))
        (local.set $w (i32.add (local.get $w) (i32.const 18)))
        (local.set $xg (i32.add (local.get $xg) (i32.const 320)))
        (local.set $sg (i32.add (local.get $sg) (i32.const 16)))
        (br $l)))
    (f32.store (local.get $out) (call $hsum (local.get $acc0)))
    (f32.store (i32.add (local.get $out) (local.get $ostride)) (call $hsum (local.get $acc1)))
    (f32.store (i32.add (local.get $out) (i32.shl (local.get $ostride) (i32.const 1))) (call $hsum (local.get $acc2)))
    (f32.store (i32.add (local.get $out) (i32.mul (local.get $ostride) (i32.const 3))) (call $hsum (local.get $acc3))))

  ;; ---------------------------------------------------------------------------------------------
  ;; Activation preparation (once per matmul, on the calling thread).

  ;; Copies `rows` rows of n (a multiple of 32) f32 into the permuted block order.
  (func (export "prep_f32") (param $x i32) (param $dst i32) (param $count i32)
    (local $end i32) (local $a v128) (local $b v128) (local $c v128) (local $d v128)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $count) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        ;; 16 elements at a time: evens then odds
        (local.set $a (v128.load (local.get $x)))
        (local.set $b (v128.load offset=16 (local.get $x)))
        (local.set $c (v128.load offset=32 (local.get $x)))
        (local.set $d (v128.load offset=48 (local.get $x)))
        (v128.store (local.get $dst) (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $a) (local.get $b)))
        (v128.store offset=16 (local.get $dst) (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $c) (local.get $d)))
        (v128.store offset=32 (local.get $dst) (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $a) (local.get $b)))
        (v128.store offset=48 (local.get $dst) (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $c) (local.get $d)))
        (local.set $x (i32.add (local.get $x) (i32.const 64)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 64)))
        (br $l))))

  ;; Quantizes `count` f32 (a multiple of 32) to int16-stored int8 blocks in the permuted order, with
  ;; one f32 scale amax / 127 per block; after each block, dqGap bytes are skipped and the scale pointer
  ;; moves by dsStep (0 and 4 for one row alone). q = nearest(x * (127 / amax)), clamped to [-127, 127].
  ;; With $q4 set, the layout $dot2_q4_i8 reads: the four parts of a block pre-multiplied by 256, 1, 16
  ;; and 256 (matching where each nibble sits in a 16-bit lane, so that one mask extracts it), then
  ;; 16 bytes holding [-2048 * sum(q), 0, 0, 0]: the nibbles' offset of 8, times the same 256.
  (func (export "quant_i8") (param $x i32) (param $dq i32) (param $ds i32) (param $count i32) (param $q4 i32)
                            (param $dqGap i32) (param $dsStep i32)
    (local $end i32) (local $j i32) (local $m v128) (local $amax f32) (local $inv v128)
    (local $a v128) (local $b v128) (local $c v128) (local $d v128) (local $ev v128) (local $od v128) (local $sum v128)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $count) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $m (f32x4.abs (v128.load (local.get $x))))
        (local.set $m (f32x4.max (local.get $m) (f32x4.abs (v128.load offset=16 (local.get $x)))))
        (local.set $m (f32x4.max (local.get $m) (f32x4.abs (v128.load offset=32 (local.get $x)))))
        (local.set $m (f32x4.max (local.get $m) (f32x4.abs (v128.load offset=48 (local.get $x)))))
        (local.set $m (f32x4.max (local.get $m) (f32x4.abs (v128.load offset=64 (local.get $x)))))
        (local.set $m (f32x4.max (local.get $m) (f32x4.abs (v128.load offset=80 (local.get $x)))))
        (local.set $m (f32x4.max (local.get $m) (f32x4.abs (v128.load offset=96 (local.get $x)))))
        (local.set $m (f32x4.max (local.get $m) (f32x4.abs (v128.load offset=112 (local.get $x)))))
        (local.set $amax (f32.max
          (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
          (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m)))))
        ;; q4_0 keeps its sums 256 times too large (below 2^24, so exact in f32): its scale carries the 2^-8
        (f32.store (local.get $ds) (f32.mul (f32.div (local.get $amax) (f32.const 127))
          (select (f32.const 0x1p-8) (f32.const 1) (local.get $q4))))
        (local.set $inv (f32x4.splat (select (f32.div (f32.const 127) (local.get $amax)) (f32.const 0)
          (f32.gt (local.get $amax) (f32.const 0)))))
        (local.set $sum (v128.const i32x4 0 0 0 0))
        ;; two halves of 16 elements: evens (8) then odds (8), each narrowed to 16-bit
        (local.set $j (i32.const 0))
        (loop $half
          (local.set $a (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load (local.get $x)) (local.get $inv)))))
          (local.set $b (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=16 (local.get $x)) (local.get $inv)))))
          (local.set $c (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=32 (local.get $x)) (local.get $inv)))))
          (local.set $d (i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=48 (local.get $x)) (local.get $inv)))))
          ;; a = x0..3, b = x4..7, c = x8..11, d = x12..15 (as int32)
          (local.set $ev (i16x8.min_s (i16x8.max_s
            (i16x8.narrow_i32x4_s
              (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $a) (local.get $b))
              (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $c) (local.get $d)))
            (v128.const i16x8 -127 -127 -127 -127 -127 -127 -127 -127))
            (v128.const i16x8 127 127 127 127 127 127 127 127)))
          (local.set $od (i16x8.min_s (i16x8.max_s
            (i16x8.narrow_i32x4_s
              (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $a) (local.get $b))
              (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $c) (local.get $d)))
            (v128.const i16x8 -127 -127 -127 -127 -127 -127 -127 -127))
            (v128.const i16x8 127 127 127 127 127 127 127 127)))
          (local.set $sum (i32x4.add (local.get $sum)
            (i32x4.add (i32x4.extadd_pairwise_i16x8_s (local.get $ev)) (i32x4.extadd_pairwise_i16x8_s (local.get $od)))))
          ;; q4 factors: first half 256 (evens) and 1 (odds), second half 16 and 256
          (v128.store (local.get $dq) (i16x8.shl (local.get $ev)
            (i32.mul (local.get $q4) (select (i32.const 8) (i32.const 4) (i32.eqz (local.get $j))))))
          (v128.store offset=16 (local.get $dq) (i16x8.shl (local.get $od)
            (i32.mul (local.get $q4) (select (i32.const 0) (i32.const 8) (i32.eqz (local.get $j))))))
          (local.set $x (i32.add (local.get $x) (i32.const 64)))
          (local.set $dq (i32.add (local.get $dq) (i32.const 32)))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br_if $half (i32.lt_u (local.get $j) (i32.const 2))))
        (if (local.get $q4)
          (then
            (v128.store (local.get $dq) (i32x4.replace_lane 0 (v128.const i32x4 0 0 0 0)
              (i32.mul (i32.const -2048) (i32.add
                (i32.add (i32x4.extract_lane 0 (local.get $sum)) (i32x4.extract_lane 1 (local.get $sum)))
                (i32.add (i32x4.extract_lane 2 (local.get $sum)) (i32x4.extract_lane 3 (local.get $sum)))))))
            (local.set $dq (i32.add (local.get $dq) (i32.const 16)))))
        ;; the grouped layout (see $gemm4_*) interleaves four rows' blocks and scales
        (local.set $dq (i32.add (local.get $dq) (local.get $dqGap)))
        (local.set $ds (i32.add (local.get $ds) (local.get $dsStep)))
        (br $l))))

  ;; ---------------------------------------------------------------------------------------------
  ;; out[r, o] for r in [0, rows), o in [o0, o1), f32-activation kinds 0..4. Activation rows go in tiles
  ;; of 16 that stay in L1/L2 while the chunk's weight rows pass over them.
  (func $tile (param $kind i32) (param $w i32) (param $x i32) (param $out i32)
              (param $inF i32) (param $outF i32) (param $rows i32) (param $o0 i32) (param $o1 i32)
    (local $o i32) (local $r i32) (local $r0 i32) (local $r1 i32) (local $wrow i32) (local $rowBytes i32)
    (local $nb i32) (local $xrow i32) (local $xstride i32) (local $v f32)
    (local.set $nb (i32.shr_u (local.get $inF) (i32.const 5)))
    (local.set $xstride (i32.shl (local.get $inF) (i32.const 2)))
    (local.set $rowBytes
      (select (i32.shl (local.get $inF) (i32.const 2))
        (select (i32.shl (local.get $inF) (i32.const 1))
          (i32.mul (local.get $nb) (select (i32.const 34) (i32.const 18) (i32.eq (local.get $kind) (i32.const 3))))
          (i32.le_u (local.get $kind) (i32.const 2)))
        (i32.eqz (local.get $kind))))
    (local.set $r0 (i32.const 0))
    (block $tdone
      (loop $tl
        (br_if $tdone (i32.ge_u (local.get $r0) (local.get $rows)))
        (local.set $r1 (i32.add (local.get $r0) (i32.const 16)))
        (if (i32.gt_u (local.get $r1) (local.get $rows)) (then (local.set $r1 (local.get $rows))))
        (local.set $o (local.get $o0))
        (local.set $wrow (i32.add (local.get $w) (i32.mul (local.get $o0) (local.get $rowBytes))))
        (block $odone
          (loop $ol
            (br_if $odone (i32.ge_u (local.get $o) (local.get $o1)))
            (local.set $r (local.get $r0))
            (block $rdone
              (loop $rl
                (br_if $rdone (i32.ge_u (local.get $r) (local.get $r1)))
                (local.set $xrow (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $xstride))))
                (block $got
                  (block $g4 (block $g3 (block $g2 (block $g1 (block $g0
                    (br_table $g0 $g1 $g2 $g3 $g4 $g0 (local.get $kind)))
                    (local.set $v (call $dot_f32 (local.get $wrow) (local.get $xrow) (local.get $inF)))
                    (br $got))
                    (local.set $v (call $dot_f16 (local.get $wrow) (local.get $xrow) (local.get $inF)))
                    (br $got))
                    (local.set $v (call $dot_bf16 (local.get $wrow) (local.get $xrow) (local.get $inF)))
                    (br $got))
                    (local.set $v (call $dot_q8_f32 (local.get $wrow) (local.get $xrow) (local.get $nb)))
                    (br $got))
                  (local.set $v (call $dot_q4_f32 (local.get $wrow) (local.get $xrow) (local.get $nb))))
                (f32.store
                  (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $outF)) (local.get $o)) (i32.const 2)))
                  (local.get $v))
                (local.set $r (i32.add (local.get $r) (i32.const 1)))
                (br $rl)))
            (local.set $wrow (i32.add (local.get $wrow) (local.get $rowBytes)))
            (local.set $o (i32.add (local.get $o) (i32.const 1)))
            (br $ol)))
        (local.set $r0 (local.get $r1))
        (br $tl))))

  ;; The same for the int8-activation kinds 5 (q8_0) and 6 (q4_0). Activation rows below rows & ~3 (when
  ;; rows >= 4) come in quant_i8's grouped layout and go four at a time against single weight rows
  ;; ($gemm4_*, prefill); the others (a lone decode row, a tail) go one at a time against four weight rows
  ;; ($dot4_*). Either way row r's data starts at xq + r * nb * blockBytes and xs + r * nb * 4.
  (func $tile_i8 (param $kind i32) (param $w i32) (param $xq i32) (param $xs i32) (param $out i32)
                 (param $inF i32) (param $outF i32) (param $rows i32) (param $o0 i32) (param $o1 i32) (param $f16 i32)
    (local $o i32) (local $r i32) (local $r0 i32) (local $r1 i32) (local $rq i32) (local $grouped i32)
    (local $wrow i32) (local $rowBytes i32) (local $nb i32) (local $orow i32) (local $xstride i32) (local $sstride i32)
    (local $s1 i32) (local $s2 i32) (local $s3 i32) (local $g i32) (local $q8 i32)
    (local.set $q8 (i32.eq (local.get $kind) (i32.const 5)))
    (local.set $nb (i32.shr_u (local.get $inF) (i32.const 5)))
    (local.set $rowBytes (i32.mul (local.get $nb) (select (i32.const 34) (i32.const 18) (local.get $q8))))
    ;; 64 bytes of activation per block; q4_0's layout adds 16 (the offset correction)
    (local.set $xstride (i32.mul (local.get $nb) (select (i32.const 64) (i32.const 80) (local.get $q8))))
    (local.set $sstride (i32.shl (local.get $nb) (i32.const 2)))
    (local.set $grouped (select (i32.and (local.get $rows) (i32.const -4)) (i32.const 0) (i32.ge_u (local.get $rows) (i32.const 4))))
    (local.set $r0 (i32.const 0))
    (block $tdone
      (loop $tl
        (br_if $tdone (i32.ge_u (local.get $r0) (local.get $rows)))
        (local.set $r1 (i32.add (local.get $r0) (i32.const 16)))
        (if (i32.gt_u (local.get $r1) (local.get $rows)) (then (local.set $r1 (local.get $rows))))
        ;; rows [r0, rq) are grouped (r0 is a multiple of 16, so groups of four line up)
        (local.set $rq (select (local.get $grouped) (local.get $r1) (i32.lt_u (local.get $grouped) (local.get $r1))))
        (if (i32.lt_u (local.get $rq) (local.get $r0)) (then (local.set $rq (local.get $r0))))
        (local.set $o (local.get $o0))
        (block $gdone
          (loop $gl
            (br_if $gdone (i32.ge_u (local.get $r0) (local.get $rq)))
            (br_if $gdone (i32.ge_u (local.get $o) (local.get $o1)))
            (local.set $wrow (i32.add (local.get $w) (i32.mul (local.get $o) (local.get $rowBytes))))
            (local.set $r (local.get $r0))
            (block $rdone
              (loop $rl
                (br_if $rdone (i32.ge_u (local.get $r) (local.get $rq)))
                (local.set $orow (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $outF)) (local.get $o)) (i32.const 2))))
                (if (local.get $q8)
                  (then (call $gemm4_q8_i8 (local.get $wrow)
                      (i32.add (local.get $xq) (i32.mul (local.get $r) (local.get $xstride)))
                      (i32.add (local.get $xs) (i32.mul (local.get $r) (local.get $sstride)))
                      (local.get $nb) (local.get $orow) (i32.shl (local.get $outF) (i32.const 2)) (local.get $f16)
                      (v128.const i16x8 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00)))
                  (else (call $gemm4_q4_i8 (local.get $wrow)
                      (i32.add (local.get $xq) (i32.mul (local.get $r) (local.get $xstride)))
                      (i32.add (local.get $xs) (i32.mul (local.get $r) (local.get $sstride)))
                      (local.get $nb) (local.get $orow) (i32.shl (local.get $outF) (i32.const 2)) (local.get $f16)
                      (v128.const i16x8 0x000f 0x000f 0x000f 0x000f 0x000f 0x000f 0x000f 0x000f)
                      (v128.const i16x8 0x0f00 0x0f00 0x0f00 0x0f00 0x0f00 0x0f00 0x0f00 0x0f00)
                      (v128.const i16x8 0x00f0 0x00f0 0x00f0 0x00f0 0x00f0 0x00f0 0x00f0 0x00f0))))
                (local.set $r (i32.add (local.get $r) (i32.const 4)))
                (br $rl)))
            (local.set $o (i32.add (local.get $o) (i32.const 1)))
            (br $gl)))
        ;; rows [rq, r1): the chunk splits into four contiguous quarters walked in lockstep: each of the
        ;; kernel's four row streams then runs on through consecutive rows (consecutive memory), which the
        ;; hardware prefetchers follow; four neighbouring rows at once make short streams that they do not
        (local.set $g (i32.shr_u (i32.add (i32.sub (local.get $o1) (local.get $o0)) (i32.const 3)) (i32.const 2)))
        (local.set $o (local.get $o0))
        (block $odone
          (loop $ol
            (br_if $odone (i32.ge_u (local.get $rq) (local.get $r1)))
            (br_if $odone (i32.ge_u (local.get $o) (i32.add (local.get $o0) (local.get $g))))
            (local.set $wrow (i32.add (local.get $w) (i32.mul (local.get $o) (local.get $rowBytes))))
            ;; offsets (in rows) of the other quarters' rows; past o1 they repeat row o
            (local.set $s1 (select (local.get $g) (i32.const 0)
              (i32.lt_u (i32.add (local.get $o) (local.get $g)) (local.get $o1))))
            (local.set $s2 (select (i32.shl (local.get $g) (i32.const 1)) (i32.const 0)
              (i32.lt_u (i32.add (local.get $o) (i32.shl (local.get $g) (i32.const 1))) (local.get $o1))))
            (local.set $s3 (select (i32.mul (local.get $g) (i32.const 3)) (i32.const 0)
              (i32.lt_u (i32.add (local.get $o) (i32.mul (local.get $g) (i32.const 3))) (local.get $o1))))
            (local.set $r (local.get $rq))
            (block $r4done
              (loop $r4l
                (br_if $r4done (i32.ge_u (local.get $r) (local.get $r1)))
                (local.set $orow (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $outF)) (local.get $o)) (i32.const 2))))
                (if (local.get $q8)
                  (then (call $dot4_q8_i8
                      (local.get $wrow) (i32.add (local.get $wrow) (i32.mul (local.get $s1) (local.get $rowBytes)))
                      (i32.add (local.get $wrow) (i32.mul (local.get $s2) (local.get $rowBytes)))
                      (i32.add (local.get $wrow) (i32.mul (local.get $s3) (local.get $rowBytes)))
                      (i32.add (local.get $xq) (i32.mul (local.get $r) (local.get $xstride)))
                      (i32.add (local.get $xs) (i32.mul (local.get $r) (local.get $sstride)))
                      (local.get $nb)
                      (local.get $orow) (i32.add (local.get $orow) (i32.shl (local.get $s1) (i32.const 2)))
                      (i32.add (local.get $orow) (i32.shl (local.get $s2) (i32.const 2)))
                      (i32.add (local.get $orow) (i32.shl (local.get $s3) (i32.const 2)))
                      (local.get $f16)
                      (v128.const i16x8 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00 0xff00)))
                  (else (call $dot4_q4_i8
                      (local.get $wrow) (i32.add (local.get $wrow) (i32.mul (local.get $s1) (local.get $rowBytes)))
                      (i32.add (local.get $wrow) (i32.mul (local.get $s2) (local.get $rowBytes)))
                      (i32.add (local.get $wrow) (i32.mul (local.get $s3) (local.get $rowBytes)))
                      (i32.add (local.get $xq) (i32.mul (local.get $r) (local.get $xstride)))
                      (i32.add (local.get $xs) (i32.mul (local.get $r) (local.get $sstride)))
                      (local.get $nb)
                      (local.get $orow) (i32.add (local.get $orow) (i32.shl (local.get $s1) (i32.const 2)))
                      (i32.add (local.get $orow) (i32.shl (local.get $s2) (i32.const 2)))
                      (i32.add (local.get $orow) (i32.shl (local.get $s3) (i32.const 2)))
                      (local.get $f16)
                      (v128.const i16x8 0x000f 0x000f 0x000f 0x000f 0x000f 0x000f 0x000f 0x000f)
                      (v128.const i16x8 0x0f00 0x0f00 0x0f00 0x0f00 0x0f00 0x0f00 0x0f00 0x0f00)
                      (v128.const i16x8 0x00f0 0x00f0 0x00f0 0x00f0 0x00f0 0x00f0 0x00f0 0x00f0))))
                (local.set $r (i32.add (local.get $r) (i32.const 1)))
                (br $r4l)))
            (local.set $o (i32.add (local.get $o) (i32.const 1)))
            (br $ol)))
        (local.set $r0 (local.get $r1))
        (br $tl))))

  ;; ---------------------------------------------------------------------------------------------
  ;; Attention (kind 7). Work item i = r * heads + h: query row r (position pos0 + r) and head h attend
  ;; over positions 0 .. pos0 + r of the layer's cache (K at w, V at xs, rows of kvHeads * headDim floats),
  ;; causal, scaled, softmax in f32 with $exp4. Scores go to the thread's scratch.
  ;; Extra control fields: 256 pos0   260 heads   264 kvHeads   268 headDim   272 scale (f32)

  ;; e^x for x <= 0 (Cephes expf: Cody-Waite reduction by ln 2, degree-6 polynomial, about 2 ulp);
  ;; 0 below -87.3 (where f32 would need subnormals), and for -infinity.
  (func $exp4 (param $x v128) (result v128)
    (local $n v128) (local $r v128) (local $p v128)
    (local.set $n (f32x4.nearest (f32x4.mul
      (f32x4.max (local.get $x) (v128.const f32x4 -87.3 -87.3 -87.3 -87.3))
      (v128.const f32x4 1.44269504088896341 1.44269504088896341 1.44269504088896341 1.44269504088896341))))
    (local.set $r (f32x4.sub
      (f32x4.sub (f32x4.max (local.get $x) (v128.const f32x4 -87.3 -87.3 -87.3 -87.3))
        (f32x4.mul (local.get $n) (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375)))
      (f32x4.mul (local.get $n) (v128.const f32x4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4))))
    (local.set $p (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1)))
    (local.set $p (f32x4.add (f32x4.add (f32x4.mul (f32x4.mul (local.get $p) (local.get $r)) (local.get $r)) (local.get $r))
      (v128.const f32x4 1 1 1 1)))
    ;; times 2^n (n in [-126, 0]), and 0 where x < -87.3
    (v128.and
      (f32x4.mul (local.get $p)
        (i32x4.shl (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $n)) (v128.const i32x4 127 127 127 127)) (i32.const 23)))
      (f32x4.ge (local.get $x) (v128.const f32x4 -87.3 -87.3 -87.3 -87.3))))

  ;; One (row, head) item: out[d] = softmax(scale * q . K[t]) . V[t] over t < len.
  (func $attend1 (param $q i32) (param $k i32) (param $v i32) (param $out i32) (param $len i32)
                 (param $stride i32) (param $d i32) (param $scale f32) (param $sc i32)
    (local $t i32) (local $i i32) (local $kp i32) (local $acc v128) (local $max f32) (local $s f32)
    (local $sum v128) (local $e v128) (local $mx v128) (local $len4 i32)
    (local $c i32) (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $vp i32) (local $p v128)
    (local $inv f32)
    ;; scores and their maximum
    (local.set $max (f32.const -inf))
    (local.set $kp (local.get $k))
    (block $sdone
      (loop $sl
        (br_if $sdone (i32.ge_u (local.get $t) (local.get $len)))
        (local.set $acc (v128.const i32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (loop $dl
          (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul
            (v128.load (i32.add (local.get $q) (local.get $i)))
            (v128.load (i32.add (local.get $kp) (local.get $i))))))
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (br_if $dl (i32.lt_u (local.get $i) (i32.shl (local.get $d) (i32.const 2)))))
        (local.set $s (f32.mul (call $hsum (local.get $acc)) (local.get $scale)))
        (f32.store (i32.add (local.get $sc) (i32.shl (local.get $t) (i32.const 2))) (local.get $s))
        (local.set $max (f32.max (local.get $max) (local.get $s)))
        (local.set $kp (i32.add (local.get $kp) (local.get $stride)))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $sl)))
    ;; pad to a multiple of 4 with -infinity (exp gives 0 there)
    (local.set $len4 (i32.and (i32.add (local.get $len) (i32.const 3)) (i32.const -4)))
    (block $pdone
      (loop $pl
        (br_if $pdone (i32.ge_u (local.get $t) (local.get $len4)))
        (f32.store (i32.add (local.get $sc) (i32.shl (local.get $t) (i32.const 2))) (f32.const -inf))
        (local.set $t (i32.add (local.get $t) (i32.const 1)))
        (br $pl)))
    ;; exponentials in place, and their sum
    (local.set $mx (f32x4.splat (local.get $max)))
    (local.set $t (i32.const 0))
    (block $edone
      (loop $el
        (br_if $edone (i32.ge_u (local.get $t) (local.get $len4)))
        (local.set $e (call $exp4 (f32x4.sub (v128.load (i32.add (local.get $sc) (i32.shl (local.get $t) (i32.const 2)))) (local.get $mx))))
        (v128.store (i32.add (local.get $sc) (i32.shl (local.get $t) (i32.const 2))) (local.get $e))
        (local.set $sum (f32x4.add (local.get $sum) (local.get $e)))
        (local.set $t (i32.add (local.get $t) (i32.const 4)))
        (br $el)))
    (local.set $inv (f32.div (f32.const 1) (call $hsum (local.get $sum))))
    ;; weighted sum of V, 16 output columns at a time (4 accumulators), then 4 at a time
    (local.set $c (i32.const 0))
    (block $cdone
      (loop $cl
        (br_if $cdone (i32.gt_u (i32.add (local.get $c) (i32.const 16)) (local.get $d)))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0))
        (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $vp (i32.add (local.get $v) (i32.shl (local.get $c) (i32.const 2))))
        (local.set $t (i32.const 0))
        (block $tdone
          (loop $tl
            (br_if $tdone (i32.ge_u (local.get $t) (local.get $len)))
            (local.set $p (v128.load32_splat (i32.add (local.get $sc) (i32.shl (local.get $t) (i32.const 2)))))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $p) (v128.load (local.get $vp)))))
            (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $p) (v128.load offset=16 (local.get $vp)))))
            (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $p) (v128.load offset=32 (local.get $vp)))))
            (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $p) (v128.load offset=48 (local.get $vp)))))
            (local.set $vp (i32.add (local.get $vp) (local.get $stride)))
            (local.set $t (i32.add (local.get $t) (i32.const 1)))
            (br $tl)))
        (local.set $p (f32x4.splat (local.get $inv)))
        (local.set $vp (i32.add (local.get $out) (i32.shl (local.get $c) (i32.const 2))))
        (v128.store (local.get $vp) (f32x4.mul (local.get $a0) (local.get $p)))
        (v128.store offset=16 (local.get $vp) (f32x4.mul (local.get $a1) (local.get $p)))
        (v128.store offset=32 (local.get $vp) (f32x4.mul (local.get $a2) (local.get $p)))
        (v128.store offset=48 (local.get $vp) (f32x4.mul (local.get $a3) (local.get $p)))
        (local.set $c (i32.add (local.get $c) (i32.const 16)))
        (br $cl)))
    (block $c4done
      (loop $c4l
        (br_if $c4done (i32.ge_u (local.get $c) (local.get $d)))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $vp (i32.add (local.get $v) (i32.shl (local.get $c) (i32.const 2))))
        (local.set $t (i32.const 0))
        (block $tdone4
          (loop $tl4
            (br_if $tdone4 (i32.ge_u (local.get $t) (local.get $len)))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
              (v128.load32_splat (i32.add (local.get $sc) (i32.shl (local.get $t) (i32.const 2))))
              (v128.load (local.get $vp)))))
            (local.set $vp (i32.add (local.get $vp) (local.get $stride)))
            (local.set $t (i32.add (local.get $t) (i32.const 1)))
            (br $tl4)))
        (v128.store (i32.add (local.get $out) (i32.shl (local.get $c) (i32.const 2)))
          (f32x4.mul (local.get $a0) (f32x4.splat (local.get $inv))))
        (local.set $c (i32.add (local.get $c) (i32.const 4)))
        (br $c4l))))

  ;; Items [i0, i1) of the attention job in control block $c; $sc is this thread's scratch.
  (func $attend (param $c i32) (param $i0 i32) (param $i1 i32) (param $sc i32)
    (local $i i32) (local $r i32) (local $h i32) (local $heads i32) (local $group i32) (local $d i32)
    (local $stride i32)
    (local.set $heads (i32.load offset=260 (local.get $c)))
    (local.set $group (i32.div_u (local.get $heads) (i32.load offset=264 (local.get $c))))
    (local.set $d (i32.load offset=268 (local.get $c)))
    (local.set $stride (i32.shl (i32.mul (i32.load offset=264 (local.get $c)) (local.get $d)) (i32.const 2)))
    (local.set $i (local.get $i0))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $i1)))
        (local.set $r (i32.div_u (local.get $i) (local.get $heads)))
        (local.set $h (i32.rem_u (local.get $i) (local.get $heads)))
        (call $attend1
          ;; q row r, head h; the head's kv head's column in K and V
          (i32.add (i32.load offset=200 (local.get $c)) (i32.shl (i32.mul (local.get $i) (local.get $d)) (i32.const 2)))
          (i32.add (i32.load offset=196 (local.get $c)) (i32.shl (i32.mul (i32.div_u (local.get $h) (local.get $group)) (local.get $d)) (i32.const 2)))
          (i32.add (i32.load offset=204 (local.get $c)) (i32.shl (i32.mul (i32.div_u (local.get $h) (local.get $group)) (local.get $d)) (i32.const 2)))
          (i32.add (i32.load offset=208 (local.get $c)) (i32.shl (i32.mul (local.get $i) (local.get $d)) (i32.const 2)))
          (i32.add (i32.add (i32.load offset=256 (local.get $c)) (local.get $r)) (i32.const 1))
          (local.get $stride) (local.get $d) (f32.load offset=272 (local.get $c)) (local.get $sc))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l))))

  ;; ---------------------------------------------------------------------------------------------
  ;; Elementwise ops of a forward pass, on the calling thread (they are memory-light and short).

  ;; out[i] = silu(gate[i]) * up[i] for n floats; silu(x) = x * sigmoid(x), with e = exp(-|x|) <= 1 so
  ;; that $exp4 stays in its range: sigmoid = 1 / (1 + e) for x >= 0, e / (1 + e) below. out may alias gate.
  (func (export "silu_mul") (param $out i32) (param $gate i32) (param $up i32) (param $n i32)
    (local $end i32) (local $x v128) (local $e v128) (local $i i32)
    (local.set $end (i32.add (local.get $gate) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.gt_u (i32.add (local.get $gate) (i32.const 16)) (local.get $end)))
        (local.set $x (v128.load (local.get $gate)))
        (local.set $e (call $exp4 (f32x4.neg (f32x4.abs (local.get $x)))))
        (v128.store (local.get $out) (f32x4.mul (v128.load (local.get $up)) (f32x4.mul (local.get $x)
          (f32x4.div
            (v128.bitselect (v128.const f32x4 1 1 1 1) (local.get $e) (f32x4.ge (local.get $x) (v128.const f32x4 0 0 0 0)))
            (f32x4.add (v128.const f32x4 1 1 1 1) (local.get $e))))))
        (local.set $gate (i32.add (local.get $gate) (i32.const 16)))
        (local.set $up (i32.add (local.get $up) (i32.const 16)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (br $l)))
    ;; the last n % 4 one lane at a time
    (block $tdone
      (loop $t
        (br_if $tdone (i32.ge_u (local.get $gate) (local.get $end)))
        (local.set $x (f32x4.splat (f32.load (local.get $gate))))
        (local.set $e (call $exp4 (f32x4.neg (f32x4.abs (local.get $x)))))
        (f32.store (local.get $out) (f32.mul (f32.load (local.get $up)) (f32x4.extract_lane 0 (f32x4.mul (local.get $x)
          (f32x4.div
            (v128.bitselect (v128.const f32x4 1 1 1 1) (local.get $e) (f32x4.ge (local.get $x) (v128.const f32x4 0 0 0 0)))
            (f32x4.add (v128.const f32x4 1 1 1 1) (local.get $e)))))))
        (local.set $gate (i32.add (local.get $gate) (i32.const 4)))
        (local.set $up (i32.add (local.get $up) (i32.const 4)))
        (local.set $out (i32.add (local.get $out) (i32.const 4)))
        (br $t))))

  ;; RMSNorm over each consecutive group of `group` floats of x (count in all): out = w * (x * scale),
  ;; scale = 1 / sqrt(mean(x^2) + eps); w holds `group` f32. out may alias x.
  (func (export "rmsnorm") (param $out i32) (param $x i32) (param $w i32) (param $count i32) (param $group i32) (param $eps f32)
    (local $g i32) (local $i i32) (local $n4 i32) (local $a0 v128) (local $a1 v128) (local $ss f32) (local $scale f32)
    (local $v v128) (local $xp i32) (local $op i32)
    (local.set $n4 (i32.and (local.get $group) (i32.const -8)))
    (block $gdone
      (loop $gl
        (br_if $gdone (i32.ge_u (local.get $g) (local.get $count)))
        (local.set $xp (i32.add (local.get $x) (i32.shl (local.get $g) (i32.const 2))))
        (local.set $op (i32.add (local.get $out) (i32.shl (local.get $g) (i32.const 2))))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (block $sdone
          (loop $sl
            (br_if $sdone (i32.ge_u (local.get $i) (local.get $n4)))
            (local.set $v (v128.load (i32.add (local.get $xp) (i32.shl (local.get $i) (i32.const 2)))))
            (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $v) (local.get $v))))
            (local.set $v (v128.load offset=16 (i32.add (local.get $xp) (i32.shl (local.get $i) (i32.const 2)))))
            (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $v) (local.get $v))))
            (local.set $i (i32.add (local.get $i) (i32.const 8)))
            (br $sl)))
        (local.set $ss (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))
        (block $tdone
          (loop $tl
            (br_if $tdone (i32.ge_u (local.get $i) (local.get $group)))
            (local.set $ss (f32.add (local.get $ss) (f32.mul
              (f32.load (i32.add (local.get $xp) (i32.shl (local.get $i) (i32.const 2))))
              (f32.load (i32.add (local.get $xp) (i32.shl (local.get $i) (i32.const 2)))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $tl)))
        (local.set $scale (f32.div (f32.const 1) (f32.sqrt (f32.add
          (f32.div (local.get $ss) (f32.convert_i32_u (local.get $group))) (local.get $eps)))))
        (local.set $v (f32x4.splat (local.get $scale)))
        (local.set $i (i32.const 0))
        (block $odone
          (loop $ol
            (br_if $odone (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $group)))
            (v128.store (i32.add (local.get $op) (i32.shl (local.get $i) (i32.const 2)))
              (f32x4.mul (v128.load (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 2))))
                (f32x4.mul (v128.load (i32.add (local.get $xp) (i32.shl (local.get $i) (i32.const 2)))) (local.get $v))))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $ol)))
        (block $o1done
          (loop $o1
            (br_if $o1done (i32.ge_u (local.get $i) (local.get $group)))
            (f32.store (i32.add (local.get $op) (i32.shl (local.get $i) (i32.const 2)))
              (f32.mul (f32.load (i32.add (local.get $w) (i32.shl (local.get $i) (i32.const 2))))
                (f32.mul (f32.load (i32.add (local.get $xp) (i32.shl (local.get $i) (i32.const 2)))) (local.get $scale))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $o1)))
        (local.set $g (i32.add (local.get $g) (local.get $group)))
        (br $gl))))

  ;; Claims chunks of output features of the job tagged $tag until none are left; returns how many it ran.
  ;; ---------------------------------------------------------------------------------------------
  ;; Sparse-bitmap weights (kinds 8 f32, 9 f16, 10 bf16 values; layout in src/sparse/bitmap.ts): per row,
  ;; one mask bit per weight and the non-zeros packed in order. Each mask byte covers 8 weights: a
  ;; 16-byte swizzle pattern looked up by that byte (the table at 64, see the top: 256 patterns for 16-bit
  ;; values, then 16 per-nibble patterns for f32 values at 4160) moves value #rank to lane i when bit i is set and zeroes
  ;; the other lanes (index 0x80), so the expansion costs one load and one swizzle per 8 weights; the value
  ;; pointer then advances by popcount(byte). Activations are padded with zeros to whole 32-chunks.

  ;; The GEMV loops take a whole mask word (four bytes, 32 weights) per iteration: the loop's own
  ;; bookkeeping (V8 adds a stack check to every iteration) then costs a quarter as much per weight, which
  ;; measured 1.2x on bf16 (docs/sparsity.md). Each row has a whole number of mask words.

  ;; f16 values, one activation row: the dense f16 conversion after the expansion.
  (func $sgemv_f16 (param $mp i32) (param $mEnd i32) (param $p i32) (param $x i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $b i32) (local $v v128) (local $hi v128) (local $lo v128)
    (local $kSignExp v128) (local $kExp v128) (local $kInf v128) (local $k112 v128)
    (local.set $kSignExp (v128.const i16x8 0x8fff 0x8fff 0x8fff 0x8fff 0x8fff 0x8fff 0x8fff 0x8fff))
    (local.set $kExp (v128.const i16x8 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00))
    (local.set $kInf (v128.const i16x8 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80))
    (local.set $k112 (v128.const f32x4 0x1p112 0x1p112 0x1p112 0x1p112))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
        (local.set $b (i32.load8_u offset=0 (local.get $mp)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p))
          (v128.load offset=64 (i32.shl (local.get $b) (i32.const 4)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $hi (v128.or
          (v128.and (i16x8.shr_s (local.get $v) (i32.const 3)) (local.get $kSignExp))
          (v128.and (i16x8.eq (v128.and (local.get $v) (local.get $kExp)) (local.get $kExp)) (local.get $kInf))))
        (local.set $lo (i16x8.shl (local.get $v) (i32.const 13)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (f32x4.mul (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $lo) (local.get $hi)) (local.get $k112))
          (v128.load offset=0 (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (f32x4.mul (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $lo) (local.get $hi)) (local.get $k112))
          (v128.load offset=16 (local.get $x)))))
        (local.set $b (i32.load8_u offset=1 (local.get $mp)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p))
          (v128.load offset=64 (i32.shl (local.get $b) (i32.const 4)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $hi (v128.or
          (v128.and (i16x8.shr_s (local.get $v) (i32.const 3)) (local.get $kSignExp))
          (v128.and (i16x8.eq (v128.and (local.get $v) (local.get $kExp)) (local.get $kExp)) (local.get $kInf))))
        (local.set $lo (i16x8.shl (local.get $v) (i32.const 13)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (f32x4.mul (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $lo) (local.get $hi)) (local.get $k112))
          (v128.load offset=32 (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (f32x4.mul (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $lo) (local.get $hi)) (local.get $k112))
          (v128.load offset=48 (local.get $x)))))
        (local.set $b (i32.load8_u offset=2 (local.get $mp)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p))
          (v128.load offset=64 (i32.shl (local.get $b) (i32.const 4)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $hi (v128.or
          (v128.and (i16x8.shr_s (local.get $v) (i32.const 3)) (local.get $kSignExp))
          (v128.and (i16x8.eq (v128.and (local.get $v) (local.get $kExp)) (local.get $kExp)) (local.get $kInf))))
        (local.set $lo (i16x8.shl (local.get $v) (i32.const 13)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (f32x4.mul (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $lo) (local.get $hi)) (local.get $k112))
          (v128.load offset=64 (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (f32x4.mul (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $lo) (local.get $hi)) (local.get $k112))
          (v128.load offset=80 (local.get $x)))))
        (local.set $b (i32.load8_u offset=3 (local.get $mp)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p))
          (v128.load offset=64 (i32.shl (local.get $b) (i32.const 4)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $hi (v128.or
          (v128.and (i16x8.shr_s (local.get $v) (i32.const 3)) (local.get $kSignExp))
          (v128.and (i16x8.eq (v128.and (local.get $v) (local.get $kExp)) (local.get $kExp)) (local.get $kInf))))
        (local.set $lo (i16x8.shl (local.get $v) (i32.const 13)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (f32x4.mul (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $lo) (local.get $hi)) (local.get $k112))
          (v128.load offset=96 (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (f32x4.mul (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $lo) (local.get $hi)) (local.get $k112))
          (v128.load offset=112 (local.get $x)))))
        (local.set $x (i32.add (local.get $x) (i32.const 128)))
        (local.set $mp (i32.add (local.get $mp) (i32.const 4)))
        (br $l)))
    (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))

  ;; bf16 values, one activation row: bf16 is the top half of an f32.
  (func $sgemv_bf16 (param $mp i32) (param $mEnd i32) (param $p i32) (param $x i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $b i32) (local $v v128) (local $zero v128)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
        (local.set $b (i32.load8_u offset=0 (local.get $mp)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p))
          (v128.load offset=64 (i32.shl (local.get $b) (i32.const 4)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v))
          (v128.load offset=0 (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v))
          (v128.load offset=16 (local.get $x)))))
        (local.set $b (i32.load8_u offset=1 (local.get $mp)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p))
          (v128.load offset=64 (i32.shl (local.get $b) (i32.const 4)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v))
          (v128.load offset=32 (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v))
          (v128.load offset=48 (local.get $x)))))
        (local.set $b (i32.load8_u offset=2 (local.get $mp)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p))
          (v128.load offset=64 (i32.shl (local.get $b) (i32.const 4)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v))
          (v128.load offset=64 (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v))
          (v128.load offset=80 (local.get $x)))))
        (local.set $b (i32.load8_u offset=3 (local.get $mp)))
        (local.set $v (i8x16.swizzle (v128.load (local.get $p))
          (v128.load offset=64 (i32.shl (local.get $b) (i32.const 4)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v))
          (v128.load offset=96 (local.get $x)))))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v))
          (v128.load offset=112 (local.get $x)))))
        (local.set $x (i32.add (local.get $x) (i32.const 128)))
        (local.set $mp (i32.add (local.get $mp) (i32.const 4)))
        (br $l)))
    (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))

  ;; f32 values, one activation row: one nibble (4 lanes) per swizzle.
  (func $sgemv_f32 (param $mp i32) (param $mEnd i32) (param $p i32) (param $x i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $b i32) (local $n i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
        (local.set $b (i32.load8_u offset=0 (local.get $mp)))
        (local.set $n (i32.and (local.get $b) (i32.const 15)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (i8x16.swizzle (v128.load (local.get $p)) (v128.load offset=4160 (i32.shl (local.get $n) (i32.const 4))))
          (v128.load offset=0 (local.get $x)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $n)) (i32.const 2))))
        (local.set $n (i32.shr_u (local.get $b) (i32.const 4)))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (i8x16.swizzle (v128.load (local.get $p)) (v128.load offset=4160 (i32.shl (local.get $n) (i32.const 4))))
          (v128.load offset=16 (local.get $x)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $n)) (i32.const 2))))
        (local.set $b (i32.load8_u offset=1 (local.get $mp)))
        (local.set $n (i32.and (local.get $b) (i32.const 15)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (i8x16.swizzle (v128.load (local.get $p)) (v128.load offset=4160 (i32.shl (local.get $n) (i32.const 4))))
          (v128.load offset=32 (local.get $x)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $n)) (i32.const 2))))
        (local.set $n (i32.shr_u (local.get $b) (i32.const 4)))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (i8x16.swizzle (v128.load (local.get $p)) (v128.load offset=4160 (i32.shl (local.get $n) (i32.const 4))))
          (v128.load offset=48 (local.get $x)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $n)) (i32.const 2))))
        (local.set $b (i32.load8_u offset=2 (local.get $mp)))
        (local.set $n (i32.and (local.get $b) (i32.const 15)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (i8x16.swizzle (v128.load (local.get $p)) (v128.load offset=4160 (i32.shl (local.get $n) (i32.const 4))))
          (v128.load offset=64 (local.get $x)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $n)) (i32.const 2))))
        (local.set $n (i32.shr_u (local.get $b) (i32.const 4)))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (i8x16.swizzle (v128.load (local.get $p)) (v128.load offset=4160 (i32.shl (local.get $n) (i32.const 4))))
          (v128.load offset=80 (local.get $x)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $n)) (i32.const 2))))
        (local.set $b (i32.load8_u offset=3 (local.get $mp)))
        (local.set $n (i32.and (local.get $b) (i32.const 15)))
        (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul
          (i8x16.swizzle (v128.load (local.get $p)) (v128.load offset=4160 (i32.shl (local.get $n) (i32.const 4))))
          (v128.load offset=96 (local.get $x)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $n)) (i32.const 2))))
        (local.set $n (i32.shr_u (local.get $b) (i32.const 4)))
        (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul
          (i8x16.swizzle (v128.load (local.get $p)) (v128.load offset=4160 (i32.shl (local.get $n) (i32.const 4))))
          (v128.load offset=112 (local.get $x)))))
        (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $n)) (i32.const 2))))
        (local.set $x (i32.add (local.get $x) (i32.const 128)))
        (local.set $mp (i32.add (local.get $mp) (i32.const 4)))
        (br $l)))
    (call $hsum (f32x4.add (local.get $a0) (local.get $a1))))

  ;; One weight row expanded to f32 at dst (several activation rows then reuse it: prefill).
  (func $sexpand (param $kind i32) (param $mp i32) (param $mEnd i32) (param $p i32) (param $dst i32) (param $f16 i32)
    (local $b i32) (local $v v128) (local $zero v128)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $mp) (local.get $mEnd)))
        (local.set $b (i32.load8_u (local.get $mp)))
        (if (i32.eq (local.get $kind) (i32.const 8))
          (then
            (v128.store (local.get $dst) (i8x16.swizzle (v128.load (local.get $p))
              (v128.load offset=4160 (i32.shl (i32.and (local.get $b) (i32.const 15)) (i32.const 4)))))
            (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (i32.and (local.get $b) (i32.const 15))) (i32.const 2))))
            (v128.store offset=16 (local.get $dst) (i8x16.swizzle (v128.load (local.get $p))
              (v128.load offset=4160 (i32.shl (i32.shr_u (local.get $b) (i32.const 4)) (i32.const 4)))))
            (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (i32.shr_u (local.get $b) (i32.const 4))) (i32.const 2)))))
          (else
            (local.set $v (i8x16.swizzle (v128.load (local.get $p))
              (v128.load offset=64 (i32.shl (local.get $b) (i32.const 4)))))
            (local.set $p (i32.add (local.get $p) (i32.shl (i32.popcnt (local.get $b)) (i32.const 1))))
            (if (i32.eq (local.get $kind) (i32.const 10))
              (then
                (v128.store (local.get $dst) (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $zero) (local.get $v)))
                (v128.store offset=16 (local.get $dst) (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $zero) (local.get $v))))
              (else
                ;; f16: the exact table lookup (prefill converts each weight once per row, not per token)
                (v128.store (local.get $dst) (local.get $v))
                (call $f16x8_to_f32 (local.get $dst) (local.get $f16))))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (local.set $mp (i32.add (local.get $mp) (i32.const 1)))
        (br $l))))

  ;; 8 f16 halves at dst (16 bytes) -> 8 f32 at dst (32 bytes), through the f16 table; in place, last first.
  (func $f16x8_to_f32 (param $dst i32) (param $f16 i32)
    (local $i i32)
    (local.set $i (i32.const 7))
    (loop $l
      (f32.store (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
        (f32.load (i32.add (local.get $f16) (i32.shl (i32.load16_u (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1)))) (i32.const 2)))))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $l (i32.ge_s (local.get $i) (i32.const 0)))))

  ;; out[r, o] for o in [o0, o1) over a sparse weight at w (header, masks, rowPtr, values).
  (func $sparse_tile (param $kind i32) (param $w i32) (param $x i32) (param $out i32) (param $inF i32) (param $outF i32)
                     (param $rows i32) (param $o0 i32) (param $o1 i32) (param $scratch i32) (param $f16 i32)
    (local $nChunks i32) (local $masks i32) (local $rowPtr i32) (local $vals i32) (local $shift i32) (local $xstride i32)
    (local $o i32) (local $mp i32) (local $mEnd i32) (local $p i32) (local $r i32) (local $v f32)
    (local.set $nChunks (i32.shr_u (i32.add (local.get $inF) (i32.const 31)) (i32.const 5)))
    (local.set $masks (i32.add (local.get $w) (i32.const 16)))
    (local.set $rowPtr (i32.add (local.get $masks) (i32.shl (i32.mul (local.get $outF) (local.get $nChunks)) (i32.const 2))))
    (local.set $vals (i32.add (local.get $rowPtr) (i32.shl (i32.add (local.get $outF) (i32.const 1)) (i32.const 2))))
    (local.set $shift (select (i32.const 2) (i32.const 1) (i32.eq (local.get $kind) (i32.const 8))))
    (local.set $xstride (i32.shl (local.get $nChunks) (i32.const 7)))
    (local.set $o (local.get $o0))
    (block $odone
      (loop $ol
        (br_if $odone (i32.ge_u (local.get $o) (local.get $o1)))
        (local.set $mp (i32.add (local.get $masks) (i32.shl (i32.mul (local.get $o) (local.get $nChunks)) (i32.const 2))))
        (local.set $mEnd (i32.add (local.get $mp) (i32.shl (local.get $nChunks) (i32.const 2))))
        (local.set $p (i32.add (local.get $vals)
          (i32.shl (i32.load (i32.add (local.get $rowPtr) (i32.shl (local.get $o) (i32.const 2)))) (local.get $shift))))
        (if (i32.eq (local.get $rows) (i32.const 1))
          (then
            (block $got
              (if (i32.eq (local.get $kind) (i32.const 9))
                (then (local.set $v (call $sgemv_f16 (local.get $mp) (local.get $mEnd) (local.get $p) (local.get $x))) (br $got)))
              (if (i32.eq (local.get $kind) (i32.const 10))
                (then (local.set $v (call $sgemv_bf16 (local.get $mp) (local.get $mEnd) (local.get $p) (local.get $x))) (br $got)))
              (local.set $v (call $sgemv_f32 (local.get $mp) (local.get $mEnd) (local.get $p) (local.get $x))))
            (f32.store (i32.add (local.get $out) (i32.shl (local.get $o) (i32.const 2))) (local.get $v)))
          (else
            (call $sexpand (local.get $kind) (local.get $mp) (local.get $mEnd) (local.get $p) (local.get $scratch) (local.get $f16))
            (local.set $r (i32.const 0))
            (block $rdone
              (loop $rl
                (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
                (f32.store
                  (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $outF)) (local.get $o)) (i32.const 2)))
                  (call $dot_f32 (local.get $scratch) (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $xstride)))
                    (i32.shl (local.get $nChunks) (i32.const 5))))
                (local.set $r (i32.add (local.get $r) (i32.const 1)))
                (br $rl)))))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (br $ol))))

  ;; `next` packs the job's tag (20 bits) over the next chunk index (12 bits). A claim is a compare-exchange
  ;; that fails once the caller has moved on to another job (or closed this one with index 0xfff), so a
  ;; worker that wakes late can never run a chunk with the parameters of a different job. Every finished
  ;; chunk counts in `done`.
  (func (export "run") (param $c i32) (param $tag i32) (param $tid i32) (result i32)
    (local $chunk i32) (local $n i32) (local $v i32) (local $i i32) (local $o0 i32) (local $o1 i32)
    (local $outF i32) (local $ran i32)
    (local.set $chunk (i32.load offset=224 (local.get $c)))
    (local.set $n (i32.load offset=228 (local.get $c)))
    (local.set $outF (i32.load offset=216 (local.get $c)))
    (block $done
      (loop $l
        (local.set $v (i32.atomic.load offset=128 (local.get $c)))
        (br_if $done (i32.ne (i32.shr_u (local.get $v) (i32.const 12)) (local.get $tag)))
        (local.set $i (i32.and (local.get $v) (i32.const 0xfff)))
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (br_if $l (i32.ne (i32.atomic.rmw.cmpxchg offset=128 (local.get $c) (local.get $v) (i32.add (local.get $v) (i32.const 1)))
                          (local.get $v)))
        (local.set $o0 (i32.mul (local.get $i) (local.get $chunk)))
        (local.set $o1 (i32.add (local.get $o0) (local.get $chunk)))
        (if (i32.gt_u (local.get $o1) (local.get $outF)) (then (local.set $o1 (local.get $outF))))
        (if (i32.ge_u (i32.load offset=192 (local.get $c)) (i32.const 8))
          (then (call $sparse_tile
            (i32.load offset=192 (local.get $c)) (i32.load offset=196 (local.get $c)) (i32.load offset=200 (local.get $c))
            (i32.load offset=208 (local.get $c)) (i32.load offset=212 (local.get $c)) (local.get $outF)
            (i32.load offset=220 (local.get $c)) (local.get $o0) (local.get $o1)
            (i32.add (i32.load offset=232 (local.get $c)) (i32.mul (local.get $tid) (i32.load offset=236 (local.get $c))))
            (i32.load offset=240 (local.get $c))))
        (else (if (i32.eq (i32.load offset=192 (local.get $c)) (i32.const 7))
          (then (call $attend (local.get $c) (local.get $o0) (local.get $o1)
            (i32.add (i32.load offset=232 (local.get $c)) (i32.mul (local.get $tid) (i32.load offset=236 (local.get $c))))))
        (else (if (i32.ge_u (i32.load offset=192 (local.get $c)) (i32.const 5))
          (then (call $tile_i8
            (i32.load offset=192 (local.get $c)) (i32.load offset=196 (local.get $c)) (i32.load offset=200 (local.get $c))
            (i32.load offset=204 (local.get $c)) (i32.load offset=208 (local.get $c)) (i32.load offset=212 (local.get $c))
            (local.get $outF) (i32.load offset=220 (local.get $c)) (local.get $o0) (local.get $o1) (i32.load offset=240 (local.get $c))))
          (else (call $tile
            (i32.load offset=192 (local.get $c)) (i32.load offset=196 (local.get $c)) (i32.load offset=200 (local.get $c))
            (i32.load offset=208 (local.get $c)) (i32.load offset=212 (local.get $c))
            (local.get $outF) (i32.load offset=220 (local.get $c)) (local.get $o0) (local.get $o1))))))))
        (drop (i32.atomic.rmw.add offset=64 (local.get $c) (i32.const 1)))
        (local.set $ran (i32.add (local.get $ran) (i32.const 1)))
        (br $l)))
    (local.get $ran))
)
