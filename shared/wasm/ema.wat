;; The EMA generator's update over flat float32 arrays, two values at a time in f64x2 lanes:
;;   ema[i] = f32(g[i] + (ema[i] - g[i]) * beta)      (every operation in IEEE double)
;; the exact bits of coordinator/ema.ts's JavaScript loop (`jsEmaUpdate`), which
;; test/ema.test.ts checks: WebAssembly never fuses a multiply and an add, and promotion and
;; demotion are exact and correctly rounded, so two lanes give what one scalar gives.
;;
;; Build: `npm run wasm` (wabt) writes shared/wasm/ema-bytes.ts from this file.
(module
  (memory (export "memory") 1)
  (func (export "ema") (param $g i32) (param $e i32) (param $n i32) (param $beta f64)
    (local $o i32) (local $end i32) (local $B v128) (local $gv v128) (local $gs f64)
    (local.set $B (f64x2.splat (local.get $beta)))
    (local.set $end (i32.shl (i32.shr_u (local.get $n) (i32.const 1)) (i32.const 3)))
    (block $done
      (loop $pair
        (br_if $done (i32.ge_u (local.get $o) (local.get $end)))
        (local.set $gv (f64x2.promote_low_f32x4
          (v128.load64_zero (i32.add (local.get $g) (local.get $o)))))
        (v128.store64_lane 0 (i32.add (local.get $e) (local.get $o))
          (f32x4.demote_f64x2_zero (f64x2.add (local.get $gv)
            (f64x2.mul
              (f64x2.sub
                (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $e) (local.get $o))))
                (local.get $gv))
              (local.get $B)))))
        (local.set $o (i32.add (local.get $o) (i32.const 8)))
        (br $pair)))
    (if (i32.and (local.get $n) (i32.const 1))
      (then
        (local.set $gs (f64.promote_f32 (f32.load (i32.add (local.get $g) (local.get $o)))))
        (f32.store (i32.add (local.get $e) (local.get $o))
          (f32.demote_f64 (f64.add (local.get $gs)
            (f64.mul
              (f64.sub (f64.promote_f32 (f32.load (i32.add (local.get $e) (local.get $o))))
                (local.get $gs))
              (local.get $beta))))))))
)
