;; Matmul kernels for src/quant's packed weight formats (kind 11 of the CPU backend's control block), a
;; module of its own beside kernels.wat over the same shared memory. out[r, o] = sum_i x[r, i] * W[o, i].
;;
;; Every 4-bit format (fp4, nf4, int4-asym, razer, nvfp4, nvfp4-razer) runs through one decoder: a group's
;; codes index a 16-entry f32 table (its "LUT", 64 bytes stored as four byte planes: plane j holds byte j of
;; each level), so one i8x16.swizzle per plane looks up 16 codes at once and two rounds of byte shuffles
;; reassemble the f32 levels in element order. The format only changes where a group's scale and LUT come
;; from (the "meta" step; fmt ids in wasm-packed.ts):
;;   1 fp4, 2 nf4   f16 scale per group                         LUT = the format's levels
;;   3 int4-asym    f16 scale + f16 zero point z per group      LUT z = (c - z), 16 LUTs
;;   4 razer        u16 word: bits 0..13 f16 |s|, 14..15 SV     LUT = E2M1 with code 0 -> +-5 / +-8, 4 LUTs
;;   5 nvfp4        E4M3 byte (table)                           LUT = E2M1
;;   6 nvfp4-razer  byte: bits 0..5 E3M3 (table), 6..7 SV       4 LUTs
;; The per-tensor f32 scale (razer's scaleMul, NVFP4's g) multiplies after the group scale.
;; int8 (fmt 7, per-row f32 scale) has its own small loop.
;;
;; Activations are f32 and exact: a fused GEMV (rows < 4) sums x * level per group and multiplies the group's
;; partial sums by scale * tensorScale once; the GEMM shape (rows >= 4) decodes each weight row once into
;; the thread's scratch as (level * scale) * tensorScale, which is bit for bit the format's unpack(), and
;; dots it with every activation row. Either way the result differs from a dense matmul over the unpacked
;; weights only by f32 rounding. x rows are `xstride` floats apart and zero-padded to whole groups (the
;; padding codes decode to finite values, times zero).
;;
;; Control block (CTRL in worker-pool.ts): 64 done, 128 tag|next, 192 kind, 196 codes, 200 x, 208 out,
;; 212 inF, 216 outF, 220 rows, 224 chunk, 228 nChunks, 232 scratch, 236 scratch stride, 240 f16 table,
;; 320 fmt, 324 group, 328 scales, 332 tensor scale (f32), 336 format tables, 340 x stride (floats),
;; 344 scale bytes a row, 348 code bytes a row.
(module
  (import "env" "memory" (memory 1 65536 shared))

  (func $hsum (param $v v128) (result f32)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
      (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))

  ;; dot of n floats at w and x (the GEMM shape's decoded row against one activation row)
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

  ;; One row of a 4-bit format: with $dst = 0 returns sum_k x[k] * W[k] (fused GEMV); otherwise writes the
  ;; decoded row (ng * G floats) to $dst and returns 0. 16 codes (8 bytes) a step; G is a multiple of 16.
  ;; $mask (0x0f bytes) comes as a parameter: V8 rebuilds v128 constants inside loops.
  (func $nib_row (param $fmt i32) (param $cp i32) (param $sp i32) (param $x i32) (param $dst i32)
                 (param $ng i32) (param $G i32) (param $tab i32) (param $f16 i32) (param $ts f32) (param $mask v128)
                 (result f32)
    (local $gi i32) (local $steps i32) (local $k i32) (local $w i32) (local $lut i32) (local $s f32)
    (local $acc v128) (local $accg v128) (local $sv v128) (local $tsv v128)
    (local $p0 v128) (local $p1 v128) (local $p2 v128) (local $p3 v128)
    (local $v v128) (local $idx v128) (local $b0 v128) (local $b1 v128) (local $b2 v128) (local $b3 v128)
    (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local $f0 v128) (local $f1 v128) (local $f2 v128) (local $f3 v128)
    (local.set $steps (i32.shr_u (local.get $G) (i32.const 4)))
    (local.set $tsv (f32x4.splat (local.get $ts)))
    (block $gdone
      (loop $gl
        (br_if $gdone (i32.ge_u (local.get $gi) (local.get $ng)))
        ;; the group's scale and LUT
        (if (i32.eq (local.get $fmt) (i32.const 3))
          (then
            (local.set $w (i32.load16_u (i32.add (local.get $sp) (i32.shl (local.get $gi) (i32.const 2)))))
            (local.set $s (f32.load (i32.add (local.get $f16) (i32.shl (local.get $w) (i32.const 2)))))
            (local.set $w (i32.load16_u offset=2 (i32.add (local.get $sp) (i32.shl (local.get $gi) (i32.const 2)))))
            (local.set $lut (i32.add (local.get $tab) (i32.add (i32.const 1024) (i32.shl
              (i32.and (i32.trunc_sat_f32_u (f32.load (i32.add (local.get $f16) (i32.shl (local.get $w) (i32.const 2))))) (i32.const 15))
              (i32.const 6))))))
          (else (if (i32.eq (local.get $fmt) (i32.const 4))
            (then
              (local.set $w (i32.load16_u (i32.add (local.get $sp) (i32.shl (local.get $gi) (i32.const 1)))))
              (local.set $s (f32.load (i32.add (local.get $f16) (i32.shl (i32.and (local.get $w) (i32.const 0x3fff)) (i32.const 2)))))
              (local.set $lut (i32.add (local.get $tab) (i32.add (i32.const 1024) (i32.shl (i32.shr_u (local.get $w) (i32.const 14)) (i32.const 6))))))
            (else (if (i32.ge_u (local.get $fmt) (i32.const 5))
              (then
                (local.set $w (i32.load8_u (i32.add (local.get $sp) (local.get $gi))))
                (local.set $s (f32.load (i32.add (local.get $tab) (i32.shl (local.get $w) (i32.const 2)))))
                (local.set $lut (i32.add (local.get $tab) (i32.add (i32.const 1024)
                  (select (i32.shl (i32.shr_u (local.get $w) (i32.const 6)) (i32.const 6)) (i32.const 0) (i32.eq (local.get $fmt) (i32.const 6)))))))
              (else
                (local.set $w (i32.load16_u (i32.add (local.get $sp) (i32.shl (local.get $gi) (i32.const 1)))))
                (local.set $s (f32.load (i32.add (local.get $f16) (i32.shl (local.get $w) (i32.const 2)))))
                (local.set $lut (i32.add (local.get $tab) (i32.const 1024)))))))))
        (local.set $p0 (v128.load (local.get $lut)))
        (local.set $p1 (v128.load offset=16 (local.get $lut)))
        (local.set $p2 (v128.load offset=32 (local.get $lut)))
        (local.set $p3 (v128.load offset=48 (local.get $lut)))
        (local.set $k (local.get $steps))
        (if (local.get $dst)
          (then
            ;; decoded weight = (level * scale) * tensorScale: the first product is exact for every format
            (local.set $sv (f32x4.splat (local.get $s)))
            (loop $dl

            (local.set $v (v128.load64_zero (local.get $cp)))
            (local.set $idx (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23
              (v128.and (local.get $v) (local.get $mask)) (i8x16.shr_u (local.get $v) (i32.const 4))))
            (local.set $b0 (i8x16.swizzle (local.get $p0) (local.get $idx)))
            (local.set $b1 (i8x16.swizzle (local.get $p1) (local.get $idx)))
            (local.set $b2 (i8x16.swizzle (local.get $p2) (local.get $idx)))
            (local.set $b3 (i8x16.swizzle (local.get $p3) (local.get $idx)))
            (local.set $t0 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $b0) (local.get $b1)))
            (local.set $t1 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $b0) (local.get $b1)))
            (local.set $t2 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $b2) (local.get $b3)))
            (local.set $t3 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $b2) (local.get $b3)))
            (local.set $f0 (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $t0) (local.get $t2)))
            (local.set $f1 (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $t0) (local.get $t2)))
            (local.set $f2 (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $t1) (local.get $t3)))
            (local.set $f3 (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $t1) (local.get $t3)))
            (local.set $cp (i32.add (local.get $cp) (i32.const 8)))
              (v128.store (local.get $dst) (f32x4.mul (f32x4.mul (local.get $f0) (local.get $sv)) (local.get $tsv)))
              (v128.store offset=16 (local.get $dst) (f32x4.mul (f32x4.mul (local.get $f1) (local.get $sv)) (local.get $tsv)))
              (v128.store offset=32 (local.get $dst) (f32x4.mul (f32x4.mul (local.get $f2) (local.get $sv)) (local.get $tsv)))
              (v128.store offset=48 (local.get $dst) (f32x4.mul (f32x4.mul (local.get $f3) (local.get $sv)) (local.get $tsv)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 64)))
              (br_if $dl (local.tee $k (i32.sub (local.get $k) (i32.const 1))))))
          (else
            (local.set $accg (v128.const i32x4 0 0 0 0))
            (loop $xl

            (local.set $v (v128.load64_zero (local.get $cp)))
            (local.set $idx (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23
              (v128.and (local.get $v) (local.get $mask)) (i8x16.shr_u (local.get $v) (i32.const 4))))
            (local.set $b0 (i8x16.swizzle (local.get $p0) (local.get $idx)))
            (local.set $b1 (i8x16.swizzle (local.get $p1) (local.get $idx)))
            (local.set $b2 (i8x16.swizzle (local.get $p2) (local.get $idx)))
            (local.set $b3 (i8x16.swizzle (local.get $p3) (local.get $idx)))
            (local.set $t0 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $b0) (local.get $b1)))
            (local.set $t1 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $b0) (local.get $b1)))
            (local.set $t2 (i8x16.shuffle 0 16 1 17 2 18 3 19 4 20 5 21 6 22 7 23 (local.get $b2) (local.get $b3)))
            (local.set $t3 (i8x16.shuffle 8 24 9 25 10 26 11 27 12 28 13 29 14 30 15 31 (local.get $b2) (local.get $b3)))
            (local.set $f0 (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $t0) (local.get $t2)))
            (local.set $f1 (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $t0) (local.get $t2)))
            (local.set $f2 (i8x16.shuffle 0 1 16 17 2 3 18 19 4 5 20 21 6 7 22 23 (local.get $t1) (local.get $t3)))
            (local.set $f3 (i8x16.shuffle 8 9 24 25 10 11 26 27 12 13 28 29 14 15 30 31 (local.get $t1) (local.get $t3)))
            (local.set $cp (i32.add (local.get $cp) (i32.const 8)))
              (local.set $accg (f32x4.add (local.get $accg) (f32x4.add
                (f32x4.add (f32x4.mul (local.get $f0) (v128.load (local.get $x))) (f32x4.mul (local.get $f1) (v128.load offset=16 (local.get $x))))
                (f32x4.add (f32x4.mul (local.get $f2) (v128.load offset=32 (local.get $x))) (f32x4.mul (local.get $f3) (v128.load offset=48 (local.get $x)))))))
              (local.set $x (i32.add (local.get $x) (i32.const 64)))
              (br_if $xl (local.tee $k (i32.sub (local.get $k) (i32.const 1)))))
            (local.set $acc (f32x4.add (local.get $acc)
              (f32x4.mul (local.get $accg) (f32x4.splat (f32.mul (local.get $s) (local.get $ts))))))))
        (local.set $gi (i32.add (local.get $gi) (i32.const 1)))
        (br $gl)))
    (call $hsum (local.get $acc)))

  ;; One row of int8 (per-row f32 scale $s): like $nib_row, n int8 codes at $cp.
  (func $i8_row (param $cp i32) (param $x i32) (param $dst i32) (param $n i32) (param $s f32) (result f32)
    (local $end i32) (local $acc v128) (local $v v128) (local $h v128) (local $sv v128) (local $sum f32)
    (local $f0 v128) (local $f1 v128) (local $f2 v128) (local $f3 v128)
    (local.set $sv (f32x4.splat (local.get $s)))
    (local.set $end (i32.add (local.get $cp) (i32.and (local.get $n) (i32.const -16))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $cp) (local.get $end)))
        (local.set $v (v128.load (local.get $cp)))
        (local.set $h (i16x8.extend_low_i8x16_s (local.get $v)))
        (local.set $f0 (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $h))))
        (local.set $f1 (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $h))))
        (local.set $h (i16x8.extend_high_i8x16_s (local.get $v)))
        (local.set $f2 (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $h))))
        (local.set $f3 (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $h))))
        (if (local.get $dst)
          (then
            (v128.store (local.get $dst) (f32x4.mul (local.get $f0) (local.get $sv)))
            (v128.store offset=16 (local.get $dst) (f32x4.mul (local.get $f1) (local.get $sv)))
            (v128.store offset=32 (local.get $dst) (f32x4.mul (local.get $f2) (local.get $sv)))
            (v128.store offset=48 (local.get $dst) (f32x4.mul (local.get $f3) (local.get $sv)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 64))))
          (else
            (local.set $acc (f32x4.add (local.get $acc) (f32x4.add
              (f32x4.add (f32x4.mul (local.get $f0) (v128.load (local.get $x))) (f32x4.mul (local.get $f1) (v128.load offset=16 (local.get $x))))
              (f32x4.add (f32x4.mul (local.get $f2) (v128.load offset=32 (local.get $x))) (f32x4.mul (local.get $f3) (v128.load offset=48 (local.get $x)))))))
            (local.set $x (i32.add (local.get $x) (i32.const 64)))))
        (local.set $cp (i32.add (local.get $cp) (i32.const 16)))
        (br $l)))
    (local.set $sum (call $hsum (local.get $acc)))
    (local.set $end (i32.add (local.get $cp) (i32.and (local.get $n) (i32.const 15))))
    (block $done2
      (loop $t
        (br_if $done2 (i32.ge_u (local.get $cp) (local.get $end)))
        (if (local.get $dst)
          (then
            (f32.store (local.get $dst) (f32.mul (f32.convert_i32_s (i32.load8_s (local.get $cp))) (local.get $s)))
            (local.set $dst (i32.add (local.get $dst) (i32.const 4))))
          (else
            (local.set $sum (f32.add (local.get $sum) (f32.mul (f32.convert_i32_s (i32.load8_s (local.get $cp))) (f32.load (local.get $x)))))
            (local.set $x (i32.add (local.get $x) (i32.const 4)))))
        (local.set $cp (i32.add (local.get $cp) (i32.const 1)))
        (br $t)))
    (f32.mul (local.get $sum) (local.get $s)))

  ;; Output features [o0, o1) of the job in the control block at $c, on thread $tid.
  (func $tile (param $c i32) (param $o0 i32) (param $o1 i32) (param $tid i32)
    (local $fmt i32) (local $G i32) (local $ng i32) (local $kp i32) (local $rows i32) (local $outF i32)
    (local $x i32) (local $xstride i32) (local $out i32) (local $o i32) (local $r i32) (local $cp i32) (local $sp i32)
    (local $dst i32) (local $v f32) (local $s f32) (local $mask v128)
    (local.set $mask (v128.const i8x16 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15 15))
    (local.set $fmt (i32.load offset=320 (local.get $c)))
    (local.set $G (i32.load offset=324 (local.get $c)))
    (local.set $rows (i32.load offset=220 (local.get $c)))
    (local.set $outF (i32.load offset=216 (local.get $c)))
    (local.set $x (i32.load offset=200 (local.get $c)))
    (local.set $out (i32.load offset=208 (local.get $c)))
    (local.set $xstride (i32.shl (i32.load offset=340 (local.get $c)) (i32.const 2)))
    (if (i32.eq (local.get $fmt) (i32.const 7))
      (then (local.set $kp (i32.load offset=212 (local.get $c))))
      (else
        (local.set $ng (i32.div_u (i32.add (i32.load offset=212 (local.get $c)) (i32.sub (local.get $G) (i32.const 1))) (local.get $G)))
        (local.set $kp (i32.mul (local.get $ng) (local.get $G)))))
    ;; the GEMM shape decodes each row once into this thread's scratch
    (if (i32.ge_u (local.get $rows) (i32.const 4))
      (then (local.set $dst (i32.add (i32.load offset=232 (local.get $c)) (i32.mul (local.get $tid) (i32.load offset=236 (local.get $c)))))))
    (local.set $o (local.get $o0))
    (block $odone
      (loop $ol
        (br_if $odone (i32.ge_u (local.get $o) (local.get $o1)))
        (local.set $cp (i32.add (i32.load offset=196 (local.get $c)) (i32.mul (local.get $o) (i32.load offset=348 (local.get $c)))))
        (local.set $sp (i32.add (i32.load offset=328 (local.get $c)) (i32.mul (local.get $o) (i32.load offset=344 (local.get $c)))))
        (if (local.get $dst)
          (then
            (if (i32.eq (local.get $fmt) (i32.const 7))
              (then (drop (call $i8_row (local.get $cp) (i32.const 0) (local.get $dst) (local.get $kp) (f32.load (local.get $sp)))))
              (else (drop (call $nib_row (local.get $fmt) (local.get $cp) (local.get $sp) (i32.const 0) (local.get $dst)
                (local.get $ng) (local.get $G) (i32.load offset=336 (local.get $c)) (i32.load offset=240 (local.get $c))
                (f32.load offset=332 (local.get $c)) (local.get $mask)))))))
        (local.set $r (i32.const 0))
        (block $rdone
          (loop $rl
            (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
            (if (local.get $dst)
              (then (local.set $v (call $dot_f32 (local.get $dst) (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $xstride))) (local.get $kp))))
              (else (if (i32.eq (local.get $fmt) (i32.const 7))
                (then (local.set $v (call $i8_row (local.get $cp) (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $xstride)))
                  (i32.const 0) (local.get $kp) (f32.load (local.get $sp)))))
                (else (local.set $v (call $nib_row (local.get $fmt) (local.get $cp) (local.get $sp)
                  (i32.add (local.get $x) (i32.mul (local.get $r) (local.get $xstride))) (i32.const 0)
                  (local.get $ng) (local.get $G) (i32.load offset=336 (local.get $c)) (i32.load offset=240 (local.get $c))
                  (f32.load offset=332 (local.get $c)) (local.get $mask)))))))
            (f32.store (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $r) (local.get $outF)) (local.get $o)) (i32.const 2)))
              (local.get $v))
            (local.set $r (i32.add (local.get $r) (i32.const 1)))
            (br $rl)))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (br $ol))))

  ;; Claims chunks of the job tagged $tag until none are left (the protocol of kernels.wat's run).
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
        (call $tile (local.get $c) (local.get $o0) (local.get $o1) (local.get $tid))
        (drop (i32.atomic.rmw.add offset=64 (local.get $c) (i32.const 1)))
        (local.set $ran (i32.add (local.get $ran) (i32.const 1)))
        (br $l)))
    (local.get $ran))
)
