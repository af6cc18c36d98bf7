;; Adam's update over flat float32 arrays, two values at a time in f64x2 lanes.
;;
;; The arithmetic is the textbook loop's (PyTorch's bias-corrected form, Kingma & Ba 2015,
;; Algorithm 1) in IEEE double, in the same order, with the moments rounded to float32 when
;; stored: the exact bits of shared/adam.ts's JavaScript loop (`jsAdamStep`), which
;; test/adam.test.ts checks. WebAssembly never fuses a multiply and an add, and its
;; division, square root, promotion and demotion are IEEE's correctly rounded operations, so
;; two lanes give what one scalar gives.
;;
;; Per value i (g, m, v, w are float32 arrays; every operation in double):
;;   mi   = f32(beta1 * m[i] + b1c * g[i])
;;   vi   = f32(beta2 * v[i] + (b2c * g[i]) * g[i])
;;   w[i] = f32(w[i] - (lr * (mi / c1)) / (sqrt(vi / c2) + eps))
;;   sq   = sq + g[i] * g[i]      (the gradient's squared norm, one value after the other,
;;                                 from the caller's running sum `sq`, which is returned)
;;
;; Build: `npm run wasm` (wabt) writes shared/wasm/adam-bytes.ts from this file.
(module
  (memory (export "memory") 1)
  (func (export "adam")
    (param $w i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
    (param $beta1 f64) (param $b1c f64) (param $beta2 f64) (param $b2c f64)
    (param $lr f64) (param $c1 f64) (param $c2 f64) (param $eps f64) (param $sq f64)
    (result f64)
    (local $o i32) (local $pairs i32) (local $end i32)
    (local $B1 v128) (local $B1C v128) (local $B2 v128) (local $B2C v128)
    (local $LR v128) (local $C1 v128) (local $C2 v128) (local $EPS v128)
    (local $gv v128) (local $mv v128) (local $vv v128)
    (local $gs f64) (local $ms f64) (local $vs f64)
    ;; c = 1 exactly (1 − β^t rounds to 1 once β^t < 2^-53: t ≥ 54 for β1 = 0.5, t ≥ 349 for
    ;; 0.9): x / 1 = x exactly, so the division is skipped with the same bits.
    (local $c1one i32) (local $c2one i32)
    (local.set $c1one (f64.eq (local.get $c1) (f64.const 1)))
    (local.set $c2one (f64.eq (local.get $c2) (f64.const 1)))
    (local.set $B1 (f64x2.splat (local.get $beta1)))
    (local.set $B1C (f64x2.splat (local.get $b1c)))
    (local.set $B2 (f64x2.splat (local.get $beta2)))
    (local.set $B2C (f64x2.splat (local.get $b2c)))
    (local.set $LR (f64x2.splat (local.get $lr)))
    (local.set $C1 (f64x2.splat (local.get $c1)))
    (local.set $C2 (f64x2.splat (local.get $c2)))
    (local.set $EPS (f64x2.splat (local.get $eps)))
    ;; $o: byte offset of the current pair; $end: byte offset after the last whole pair.
    (local.set $end (i32.shl (i32.shr_u (local.get $n) (i32.const 1)) (i32.const 3)))
    (local.set $o (i32.const 0))
    (block $done
      (loop $pair
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $gv (f64x2.promote_low_f32x4
          (v128.load64_zero (i32.add (local.get $g) (local.get $o)))))
        ;; the squared norm, in order: a dependency chain that hides under the divisions below
        (local.set $sq (f64.add (local.get $sq)
          (f64.mul (f64x2.extract_lane 0 (local.get $gv)) (f64x2.extract_lane 0 (local.get $gv)))))
        (local.set $sq (f64.add (local.get $sq)
          (f64.mul (f64x2.extract_lane 1 (local.get $gv)) (f64x2.extract_lane 1 (local.get $gv)))))
        ;; mi = f32(beta1 * m + b1c * g), stored, then used as its double value
        (local.set $mv (f32x4.demote_f64x2_zero (f64x2.add
          (f64x2.mul (local.get $B1) (f64x2.promote_low_f32x4
            (v128.load64_zero (i32.add (local.get $m) (local.get $o)))))
          (f64x2.mul (local.get $B1C) (local.get $gv)))))
        (v128.store64_lane 0 (i32.add (local.get $m) (local.get $o)) (local.get $mv))
        (local.set $mv (f64x2.promote_low_f32x4 (local.get $mv)))
        ;; vi = f32(beta2 * v + (b2c * g) * g)
        (local.set $vv (f32x4.demote_f64x2_zero (f64x2.add
          (f64x2.mul (local.get $B2) (f64x2.promote_low_f32x4
            (v128.load64_zero (i32.add (local.get $v) (local.get $o)))))
          (f64x2.mul (f64x2.mul (local.get $B2C) (local.get $gv)) (local.get $gv)))))
        (v128.store64_lane 0 (i32.add (local.get $v) (local.get $o)) (local.get $vv))
        (local.set $vv (f64x2.promote_low_f32x4 (local.get $vv)))
        ;; w = f32(w - (lr * (mi / c1)) / (sqrt(vi / c2) + eps))
        (v128.store64_lane 0 (i32.add (local.get $w) (local.get $o))
          (f32x4.demote_f64x2_zero (f64x2.sub
            (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $w) (local.get $o))))
            (f64x2.div
              (f64x2.mul (local.get $LR)
                (if (result v128) (local.get $c1one)
                  (then (local.get $mv))
                  (else (f64x2.div (local.get $mv) (local.get $C1)))))
              (f64x2.add
                (f64x2.sqrt
                  (if (result v128) (local.get $c2one)
                    (then (local.get $vv))
                    (else (f64x2.div (local.get $vv) (local.get $C2)))))
                (local.get $EPS))))))
        (local.set $o (i32.add (local.get $o) (i32.const 8)))
        (br $pair)))
    ;; An odd last value, the same arithmetic in scalar double.
    (if (i32.and (local.get $n) (i32.const 1))
      (then
        (local.set $gs (f64.promote_f32 (f32.load (i32.add (local.get $g) (local.get $o)))))
        (local.set $sq (f64.add (local.get $sq) (f64.mul (local.get $gs) (local.get $gs))))
        (local.set $ms (f64.promote_f32 (f32.demote_f64 (f64.add
          (f64.mul (local.get $beta1)
            (f64.promote_f32 (f32.load (i32.add (local.get $m) (local.get $o)))))
          (f64.mul (local.get $b1c) (local.get $gs))))))
        (f32.store (i32.add (local.get $m) (local.get $o)) (f32.demote_f64 (local.get $ms)))
        (local.set $vs (f64.promote_f32 (f32.demote_f64 (f64.add
          (f64.mul (local.get $beta2)
            (f64.promote_f32 (f32.load (i32.add (local.get $v) (local.get $o)))))
          (f64.mul (f64.mul (local.get $b2c) (local.get $gs)) (local.get $gs))))))
        (f32.store (i32.add (local.get $v) (local.get $o)) (f32.demote_f64 (local.get $vs)))
        (f32.store (i32.add (local.get $w) (local.get $o))
          (f32.demote_f64 (f64.sub
            (f64.promote_f32 (f32.load (i32.add (local.get $w) (local.get $o))))
            (f64.div
              (f64.mul (local.get $lr) (f64.div (local.get $ms) (local.get $c1)))
              (f64.add (f64.sqrt (f64.div (local.get $vs) (local.get $c2)))
                (local.get $eps))))))))
    (local.get $sq))
)
