;; tanh over float32 values on tfjs-backend-wasm's heap (the module imports its memory;
;; pointers are byte offsets into it), four values at a time.
;;
;; The 13/6-degree rational interpolant of Eigen's generic_fast_tanh_float (Eigen 3.3,
;; Core/MathFunctionsImpl.h; what TensorFlow's CPU kernels use): x clamped to [-9, 9]
;; (tanh there is ±1 in float32), tanh(x) ≈ x·P(x²) / Q(x²), within a few ulp. Below
;; |x| < 0.0004, tanh(x) = x to float32 precision and x is returned as is. Every operation is
;; a float32 multiply, add, divide, min or max (WebAssembly never fuses them), so the bits are
;; the same on every machine and in both the four-lane loop and the scalar tail. NaN stays
;; NaN (min and max propagate it).
;;
;; Build: `npm run wasm` (wabt) writes shared/wasm/tanh-bytes.ts from this file.
(module
  (import "env" "memory" (memory 0))

  (func (export "tanh") (param $x i32) (param $y i32) (param $n i32)
    (local $o i32) (local $end i32) (local $bytes i32)
    (local $a v128) (local $c v128) (local $c2 v128) (local $p v128) (local $q v128)
    (local $as f32) (local $cs f32) (local $c2s f32) (local $ps f32) (local $qs f32)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))
    (local.set $end (i32.and (local.get $bytes) (i32.const -16)))
    (block $v_done
      (loop $v
        (br_if $v_done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $a (v128.load (i32.add (local.get $x) (local.get $o))))
        (local.set $c (f32x4.max (f32x4.min (local.get $a) (v128.const f32x4 9 9 9 9))
          (v128.const f32x4 -9 -9 -9 -9)))
        (local.set $c2 (f32x4.mul (local.get $c) (local.get $c)))
        ;; P(x²) = ((((((a13·x² + a11)·x² + a9)·x² + a7)·x² + a5)·x² + a3)·x² + a1), then ·x
        (local.set $p (f32x4.add (f32x4.mul (local.get $c2)
          (v128.const f32x4 -2.76076847742355e-16 -2.76076847742355e-16 -2.76076847742355e-16 -2.76076847742355e-16))
          (v128.const f32x4 2.00018790482477e-13 2.00018790482477e-13 2.00018790482477e-13 2.00018790482477e-13)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $c2) (local.get $p))
          (v128.const f32x4 -8.60467152213735e-11 -8.60467152213735e-11 -8.60467152213735e-11 -8.60467152213735e-11)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $c2) (local.get $p))
          (v128.const f32x4 5.12229709037114e-08 5.12229709037114e-08 5.12229709037114e-08 5.12229709037114e-08)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $c2) (local.get $p))
          (v128.const f32x4 1.48572235717979e-05 1.48572235717979e-05 1.48572235717979e-05 1.48572235717979e-05)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $c2) (local.get $p))
          (v128.const f32x4 6.37261928875436e-04 6.37261928875436e-04 6.37261928875436e-04 6.37261928875436e-04)))
        (local.set $p (f32x4.add (f32x4.mul (local.get $c2) (local.get $p))
          (v128.const f32x4 4.89352455891786e-03 4.89352455891786e-03 4.89352455891786e-03 4.89352455891786e-03)))
        (local.set $p (f32x4.mul (local.get $c) (local.get $p)))
        ;; Q(x²) = ((b6·x² + b4)·x² + b2)·x² + b0
        (local.set $q (f32x4.add (f32x4.mul (local.get $c2)
          (v128.const f32x4 1.19825839466702e-06 1.19825839466702e-06 1.19825839466702e-06 1.19825839466702e-06))
          (v128.const f32x4 1.18534705686654e-04 1.18534705686654e-04 1.18534705686654e-04 1.18534705686654e-04)))
        (local.set $q (f32x4.add (f32x4.mul (local.get $c2) (local.get $q))
          (v128.const f32x4 2.26843463243900e-03 2.26843463243900e-03 2.26843463243900e-03 2.26843463243900e-03)))
        (local.set $q (f32x4.add (f32x4.mul (local.get $c2) (local.get $q))
          (v128.const f32x4 4.89352518554385e-03 4.89352518554385e-03 4.89352518554385e-03 4.89352518554385e-03)))
        ;; |x| < 0.0004: x itself
        (v128.store (i32.add (local.get $y) (local.get $o))
          (v128.bitselect (local.get $a) (f32x4.div (local.get $p) (local.get $q))
            (f32x4.lt (f32x4.abs (local.get $a)) (v128.const f32x4 0.0004 0.0004 0.0004 0.0004))))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $v)))
    (block $s_done
      (loop $s
        (br_if $s_done (i32.ge_u (local.get $o) (local.get $bytes)))
        (local.set $as (f32.load (i32.add (local.get $x) (local.get $o))))
        (local.set $cs (f32.max (f32.min (local.get $as) (f32.const 9)) (f32.const -9)))
        (local.set $c2s (f32.mul (local.get $cs) (local.get $cs)))
        (local.set $ps (f32.add (f32.mul (local.get $c2s) (f32.const -2.76076847742355e-16))
          (f32.const 2.00018790482477e-13)))
        (local.set $ps (f32.add (f32.mul (local.get $c2s) (local.get $ps)) (f32.const -8.60467152213735e-11)))
        (local.set $ps (f32.add (f32.mul (local.get $c2s) (local.get $ps)) (f32.const 5.12229709037114e-08)))
        (local.set $ps (f32.add (f32.mul (local.get $c2s) (local.get $ps)) (f32.const 1.48572235717979e-05)))
        (local.set $ps (f32.add (f32.mul (local.get $c2s) (local.get $ps)) (f32.const 6.37261928875436e-04)))
        (local.set $ps (f32.add (f32.mul (local.get $c2s) (local.get $ps)) (f32.const 4.89352455891786e-03)))
        (local.set $ps (f32.mul (local.get $cs) (local.get $ps)))
        (local.set $qs (f32.add (f32.mul (local.get $c2s) (f32.const 1.19825839466702e-06))
          (f32.const 1.18534705686654e-04)))
        (local.set $qs (f32.add (f32.mul (local.get $c2s) (local.get $qs)) (f32.const 2.26843463243900e-03)))
        (local.set $qs (f32.add (f32.mul (local.get $c2s) (local.get $qs)) (f32.const 4.89352518554385e-03)))
        (f32.store (i32.add (local.get $y) (local.get $o))
          (select (local.get $as) (f32.div (local.get $ps) (local.get $qs))
            (f32.lt (f32.abs (local.get $as)) (f32.const 0.0004))))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $s))))
)
