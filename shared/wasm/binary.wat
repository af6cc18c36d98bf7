;; Element-wise float32 add, subtract, multiply and divide on tfjs-backend-wasm's heap (the
;; module imports its memory; pointers are byte offsets into it), four values at a time, for
;; the blas backend's Add, Sub, Multiply and RealDiv (shared/blas-kernels.ts).
;;
;; Each export computes, for i in [0, n):
;;   y[i] = x[i] OP p[i mod m]     when rev = 0
;;   y[i] = p[i mod m] OP x[i]     when rev = 1
;; which covers equal shapes (m = n), a scalar operand (m = 1) and an operand broadcast over
;; the leading axes (m = its size; n a multiple of m). Each value is one IEEE float32
;; operation, as in the stock kernels (which call the operation through a function pointer per
;; value), so the bits are theirs.
;;
;; The four functions are one template with the operation substituted.
;; Build: `npm run wasm` (wabt) writes shared/wasm/binary-bytes.ts from this file.
(module
  (import "env" "memory" (memory 0))

  (func (export "add") (param $x i32) (param $p i32) (param $y i32) (param $n i32)
    (param $m i32) (param $rev i32)
    (local $o i32) (local $j i32) (local $block i32) (local $vend i32) (local $bytes i32)
    (local $a v128) (local $b v128) (local $s f32)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))
    (if (i32.eq (local.get $m) (i32.const 1))
      (then
        ;; one value of p for all: splat it
        (local.set $s (f32.load (local.get $p)))
        (local.set $b (f32x4.splat (local.get $s)))
        (local.set $vend (i32.and (local.get $bytes) (i32.const -16)))
        (block $v_done
          (loop $v
            (br_if $v_done (i32.ge_u (local.get $o) (local.get $vend)))
            (local.set $a (v128.load (i32.add (local.get $x) (local.get $o))))
            (v128.store (i32.add (local.get $y) (local.get $o))
              (if (result v128) (local.get $rev)
                (then (f32x4.add (local.get $b) (local.get $a)))
                (else (f32x4.add (local.get $a) (local.get $b)))))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (br $v)))
        (block $s_done
          (loop $sl
            (br_if $s_done (i32.ge_u (local.get $o) (local.get $bytes)))
            (f32.store (i32.add (local.get $y) (local.get $o))
              (if (result f32) (local.get $rev)
                (then (f32.add (local.get $s) (f32.load (i32.add (local.get $x) (local.get $o)))))
                (else (f32.add (f32.load (i32.add (local.get $x) (local.get $o))) (local.get $s)))))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))
            (br $sl))))
      (else
        ;; blocks of m values of x against p[0 .. m)
        (local.set $block (i32.shl (local.get $m) (i32.const 2)))
        (local.set $vend (i32.and (local.get $block) (i32.const -16)))
        (block $blocks_done
          (loop $blocks
            (br_if $blocks_done (i32.ge_u (local.get $o) (local.get $bytes)))
            (local.set $j (i32.const 0))
            (block $v_done
              (loop $v
                (br_if $v_done (i32.ge_u (local.get $j) (local.get $vend)))
                (local.set $a (v128.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j)))))
                (local.set $b (v128.load (i32.add (local.get $p) (local.get $j))))
                (v128.store (i32.add (local.get $y) (i32.add (local.get $o) (local.get $j)))
                  (if (result v128) (local.get $rev)
                    (then (f32x4.add (local.get $b) (local.get $a)))
                    (else (f32x4.add (local.get $a) (local.get $b)))))
                (local.set $j (i32.add (local.get $j) (i32.const 16)))
                (br $v)))
            (block $s_done
              (loop $sl
                (br_if $s_done (i32.ge_u (local.get $j) (local.get $block)))
                (f32.store (i32.add (local.get $y) (i32.add (local.get $o) (local.get $j)))
                  (if (result f32) (local.get $rev)
                    (then (f32.add (f32.load (i32.add (local.get $p) (local.get $j)))
                      (f32.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j))))))
                    (else (f32.add (f32.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j))))
                      (f32.load (i32.add (local.get $p) (local.get $j)))))))
                (local.set $j (i32.add (local.get $j) (i32.const 4)))
                (br $sl)))
            (local.set $o (i32.add (local.get $o) (local.get $block)))
            (br $blocks))))))

  (func (export "sub") (param $x i32) (param $p i32) (param $y i32) (param $n i32)
    (param $m i32) (param $rev i32)
    (local $o i32) (local $j i32) (local $block i32) (local $vend i32) (local $bytes i32)
    (local $a v128) (local $b v128) (local $s f32)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))
    (if (i32.eq (local.get $m) (i32.const 1))
      (then
        ;; one value of p for all: splat it
        (local.set $s (f32.load (local.get $p)))
        (local.set $b (f32x4.splat (local.get $s)))
        (local.set $vend (i32.and (local.get $bytes) (i32.const -16)))
        (block $v_done
          (loop $v
            (br_if $v_done (i32.ge_u (local.get $o) (local.get $vend)))
            (local.set $a (v128.load (i32.add (local.get $x) (local.get $o))))
            (v128.store (i32.add (local.get $y) (local.get $o))
              (if (result v128) (local.get $rev)
                (then (f32x4.sub (local.get $b) (local.get $a)))
                (else (f32x4.sub (local.get $a) (local.get $b)))))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (br $v)))
        (block $s_done
          (loop $sl
            (br_if $s_done (i32.ge_u (local.get $o) (local.get $bytes)))
            (f32.store (i32.add (local.get $y) (local.get $o))
              (if (result f32) (local.get $rev)
                (then (f32.sub (local.get $s) (f32.load (i32.add (local.get $x) (local.get $o)))))
                (else (f32.sub (f32.load (i32.add (local.get $x) (local.get $o))) (local.get $s)))))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))
            (br $sl))))
      (else
        ;; blocks of m values of x against p[0 .. m)
        (local.set $block (i32.shl (local.get $m) (i32.const 2)))
        (local.set $vend (i32.and (local.get $block) (i32.const -16)))
        (block $blocks_done
          (loop $blocks
            (br_if $blocks_done (i32.ge_u (local.get $o) (local.get $bytes)))
            (local.set $j (i32.const 0))
            (block $v_done
              (loop $v
                (br_if $v_done (i32.ge_u (local.get $j) (local.get $vend)))
                (local.set $a (v128.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j)))))
                (local.set $b (v128.load (i32.add (local.get $p) (local.get $j))))
                (v128.store (i32.add (local.get $y) (i32.add (local.get $o) (local.get $j)))
                  (if (result v128) (local.get $rev)
                    (then (f32x4.sub (local.get $b) (local.get $a)))
                    (else (f32x4.sub (local.get $a) (local.get $b)))))
                (local.set $j (i32.add (local.get $j) (i32.const 16)))
                (br $v)))
            (block $s_done
              (loop $sl
                (br_if $s_done (i32.ge_u (local.get $j) (local.get $block)))
                (f32.store (i32.add (local.get $y) (i32.add (local.get $o) (local.get $j)))
                  (if (result f32) (local.get $rev)
                    (then (f32.sub (f32.load (i32.add (local.get $p) (local.get $j)))
                      (f32.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j))))))
                    (else (f32.sub (f32.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j))))
                      (f32.load (i32.add (local.get $p) (local.get $j)))))))
                (local.set $j (i32.add (local.get $j) (i32.const 4)))
                (br $sl)))
            (local.set $o (i32.add (local.get $o) (local.get $block)))
            (br $blocks))))))

  (func (export "mul") (param $x i32) (param $p i32) (param $y i32) (param $n i32)
    (param $m i32) (param $rev i32)
    (local $o i32) (local $j i32) (local $block i32) (local $vend i32) (local $bytes i32)
    (local $a v128) (local $b v128) (local $s f32)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))
    (if (i32.eq (local.get $m) (i32.const 1))
      (then
        ;; one value of p for all: splat it
        (local.set $s (f32.load (local.get $p)))
        (local.set $b (f32x4.splat (local.get $s)))
        (local.set $vend (i32.and (local.get $bytes) (i32.const -16)))
        (block $v_done
          (loop $v
            (br_if $v_done (i32.ge_u (local.get $o) (local.get $vend)))
            (local.set $a (v128.load (i32.add (local.get $x) (local.get $o))))
            (v128.store (i32.add (local.get $y) (local.get $o))
              (if (result v128) (local.get $rev)
                (then (f32x4.mul (local.get $b) (local.get $a)))
                (else (f32x4.mul (local.get $a) (local.get $b)))))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (br $v)))
        (block $s_done
          (loop $sl
            (br_if $s_done (i32.ge_u (local.get $o) (local.get $bytes)))
            (f32.store (i32.add (local.get $y) (local.get $o))
              (if (result f32) (local.get $rev)
                (then (f32.mul (local.get $s) (f32.load (i32.add (local.get $x) (local.get $o)))))
                (else (f32.mul (f32.load (i32.add (local.get $x) (local.get $o))) (local.get $s)))))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))
            (br $sl))))
      (else
        ;; blocks of m values of x against p[0 .. m)
        (local.set $block (i32.shl (local.get $m) (i32.const 2)))
        (local.set $vend (i32.and (local.get $block) (i32.const -16)))
        (block $blocks_done
          (loop $blocks
            (br_if $blocks_done (i32.ge_u (local.get $o) (local.get $bytes)))
            (local.set $j (i32.const 0))
            (block $v_done
              (loop $v
                (br_if $v_done (i32.ge_u (local.get $j) (local.get $vend)))
                (local.set $a (v128.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j)))))
                (local.set $b (v128.load (i32.add (local.get $p) (local.get $j))))
                (v128.store (i32.add (local.get $y) (i32.add (local.get $o) (local.get $j)))
                  (if (result v128) (local.get $rev)
                    (then (f32x4.mul (local.get $b) (local.get $a)))
                    (else (f32x4.mul (local.get $a) (local.get $b)))))
                (local.set $j (i32.add (local.get $j) (i32.const 16)))
                (br $v)))
            (block $s_done
              (loop $sl
                (br_if $s_done (i32.ge_u (local.get $j) (local.get $block)))
                (f32.store (i32.add (local.get $y) (i32.add (local.get $o) (local.get $j)))
                  (if (result f32) (local.get $rev)
                    (then (f32.mul (f32.load (i32.add (local.get $p) (local.get $j)))
                      (f32.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j))))))
                    (else (f32.mul (f32.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j))))
                      (f32.load (i32.add (local.get $p) (local.get $j)))))))
                (local.set $j (i32.add (local.get $j) (i32.const 4)))
                (br $sl)))
            (local.set $o (i32.add (local.get $o) (local.get $block)))
            (br $blocks))))))

  (func (export "div") (param $x i32) (param $p i32) (param $y i32) (param $n i32)
    (param $m i32) (param $rev i32)
    (local $o i32) (local $j i32) (local $block i32) (local $vend i32) (local $bytes i32)
    (local $a v128) (local $b v128) (local $s f32)
    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))
    (if (i32.eq (local.get $m) (i32.const 1))
      (then
        ;; one value of p for all: splat it
        (local.set $s (f32.load (local.get $p)))
        (local.set $b (f32x4.splat (local.get $s)))
        (local.set $vend (i32.and (local.get $bytes) (i32.const -16)))
        (block $v_done
          (loop $v
            (br_if $v_done (i32.ge_u (local.get $o) (local.get $vend)))
            (local.set $a (v128.load (i32.add (local.get $x) (local.get $o))))
            (v128.store (i32.add (local.get $y) (local.get $o))
              (if (result v128) (local.get $rev)
                (then (f32x4.div (local.get $b) (local.get $a)))
                (else (f32x4.div (local.get $a) (local.get $b)))))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (br $v)))
        (block $s_done
          (loop $sl
            (br_if $s_done (i32.ge_u (local.get $o) (local.get $bytes)))
            (f32.store (i32.add (local.get $y) (local.get $o))
              (if (result f32) (local.get $rev)
                (then (f32.div (local.get $s) (f32.load (i32.add (local.get $x) (local.get $o)))))
                (else (f32.div (f32.load (i32.add (local.get $x) (local.get $o))) (local.get $s)))))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))
            (br $sl))))
      (else
        ;; blocks of m values of x against p[0 .. m)
        (local.set $block (i32.shl (local.get $m) (i32.const 2)))
        (local.set $vend (i32.and (local.get $block) (i32.const -16)))
        (block $blocks_done
          (loop $blocks
            (br_if $blocks_done (i32.ge_u (local.get $o) (local.get $bytes)))
            (local.set $j (i32.const 0))
            (block $v_done
              (loop $v
                (br_if $v_done (i32.ge_u (local.get $j) (local.get $vend)))
                (local.set $a (v128.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j)))))
                (local.set $b (v128.load (i32.add (local.get $p) (local.get $j))))
                (v128.store (i32.add (local.get $y) (i32.add (local.get $o) (local.get $j)))
                  (if (result v128) (local.get $rev)
                    (then (f32x4.div (local.get $b) (local.get $a)))
                    (else (f32x4.div (local.get $a) (local.get $b)))))
                (local.set $j (i32.add (local.get $j) (i32.const 16)))
                (br $v)))
            (block $s_done
              (loop $sl
                (br_if $s_done (i32.ge_u (local.get $j) (local.get $block)))
                (f32.store (i32.add (local.get $y) (i32.add (local.get $o) (local.get $j)))
                  (if (result f32) (local.get $rev)
                    (then (f32.div (f32.load (i32.add (local.get $p) (local.get $j)))
                      (f32.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j))))))
                    (else (f32.div (f32.load (i32.add (local.get $x) (i32.add (local.get $o) (local.get $j))))
                      (f32.load (i32.add (local.get $p) (local.get $j)))))))
                (local.set $j (i32.add (local.get $j) (i32.const 4)))
                (br $sl)))
            (local.set $o (i32.add (local.get $o) (local.get $block)))
            (br $blocks))))))
)
