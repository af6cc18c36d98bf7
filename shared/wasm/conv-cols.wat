;; im2col and col2im for the blas backend's convolutions (shared/blas-kernels.ts), working in
;; place on tfjs-backend-wasm's heap: the module imports that heap's memory, and every
;; pointer below is a byte offset into it. NHWC float32, dilation 1.
;;
;; col2im adds with f32x4.add, which rounds each sum to float32 exactly as the JavaScript
;; `dx[i] += cols[j]` does (a float32 sum is exact in double), and in the same order (rows of
;; cols in turn; one row touches an element of dx at most once), so the bits are the
;; JavaScript loop's (test/wasm-kernels.test.ts compares them).
;;
;; Build: `npm run wasm` (wabt) writes shared/wasm/conv-cols-bytes.ts from this file.
(module
  (import "env" "memory" (memory 0))

  ;; dst[0 .. bytes) = src[0 .. bytes): 16 bytes at a time, then 4 (bytes is a multiple of 4).
  (func $copy (param $dst i32) (param $src i32) (param $bytes i32)
    (local $p i32) (local $end i32)
    (local.set $end (i32.and (local.get $bytes) (i32.const -16)))
    (block $v_done
      (loop $v
        (br_if $v_done (i32.ge_u (local.get $p) (local.get $end)))
        (v128.store (i32.add (local.get $dst) (local.get $p))
          (v128.load (i32.add (local.get $src) (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br $v)))
    (block $s_done
      (loop $s
        (br_if $s_done (i32.ge_u (local.get $p) (local.get $bytes)))
        (f32.store (i32.add (local.get $dst) (local.get $p))
          (f32.load (i32.add (local.get $src) (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (br $s))))

  ;; dst[i] += src[i] for the bytes / 4 floats from 0.
  (func $add (param $dst i32) (param $src i32) (param $bytes i32)
    (local $p i32) (local $end i32) (local $a i32)
    (local.set $end (i32.and (local.get $bytes) (i32.const -16)))
    (block $v_done
      (loop $v
        (br_if $v_done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $a (i32.add (local.get $dst) (local.get $p)))
        (v128.store (local.get $a)
          (f32x4.add (v128.load (local.get $a))
            (v128.load (i32.add (local.get $src) (local.get $p)))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br $v)))
    (block $s_done
      (loop $s
        (br_if $s_done (i32.ge_u (local.get $p) (local.get $bytes)))
        (local.set $a (i32.add (local.get $dst) (local.get $p)))
        (f32.store (local.get $a)
          (f32.add (f32.load (local.get $a))
            (f32.load (i32.add (local.get $src) (local.get $p)))))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (br $s))))

  ;; cols[(b, y, xo), (i, j, c)] = x[b, y·sh + i − padTop, xo·sw + j − padLeft, c], 0 outside x,
  ;; for images first … first + count − 1 (cols starts at image `first`).
  (func (export "im2col")
    (param $x i32) (param $cols i32) (param $first i32) (param $count i32)
    (param $h i32) (param $w i32) (param $ci i32) (param $oh i32) (param $ow i32)
    (param $kh i32) (param $kw i32) (param $sh i32) (param $sw i32)
    (param $padTop i32) (param $padLeft i32)
    (local $b i32) (local $y i32) (local $xo i32) (local $i i32)
    (local $image i32) (local $x0 i32) (local $lo i32) (local $hi i32) (local $yIn i32)
    (local $run i32) (local $pix i32) (local $dst i32)
    ;; bytes per pixel and per filter row
    (local.set $pix (i32.shl (local.get $ci) (i32.const 2)))
    (local.set $run (i32.mul (local.get $kw) (local.get $pix)))
    (local.set $dst (local.get $cols))
    (local.set $b (local.get $first))
    (block $b_done (loop $b_loop
      (br_if $b_done (i32.ge_u (local.get $b) (i32.add (local.get $first) (local.get $count))))
      (local.set $image (i32.add (local.get $x)
        (i32.mul (local.get $b) (i32.mul (i32.mul (local.get $h) (local.get $w)) (local.get $pix)))))
      (local.set $y (i32.const 0))
      (block $y_done (loop $y_loop
        (br_if $y_done (i32.ge_s (local.get $y) (local.get $oh)))
        (local.set $xo (i32.const 0))
        (block $x_done (loop $x_loop
          (br_if $x_done (i32.ge_s (local.get $xo) (local.get $ow)))
          (local.set $x0 (i32.sub (i32.mul (local.get $xo) (local.get $sw)) (local.get $padLeft)))
          ;; taps j with 0 <= x0 + j < w: [lo, hi)
          (local.set $lo (select (i32.const 0) (i32.sub (i32.const 0) (local.get $x0))
            (i32.ge_s (local.get $x0) (i32.const 0))))
          (local.set $hi (select (local.get $kw) (i32.sub (local.get $w) (local.get $x0))
            (i32.le_s (local.get $kw) (i32.sub (local.get $w) (local.get $x0)))))
          (local.set $i (i32.const 0))
          (block $i_done (loop $i_loop
            (br_if $i_done (i32.ge_s (local.get $i) (local.get $kh)))
            (local.set $yIn (i32.sub
              (i32.add (i32.mul (local.get $y) (local.get $sh)) (local.get $i))
              (local.get $padTop)))
            (if (i32.or (i32.or (i32.lt_s (local.get $yIn) (i32.const 0))
                  (i32.ge_s (local.get $yIn) (local.get $h)))
                  (i32.le_s (local.get $hi) (local.get $lo)))
              (then (memory.fill (local.get $dst) (i32.const 0) (local.get $run)))
              (else
                (if (i32.gt_s (local.get $lo) (i32.const 0))
                  (then (memory.fill (local.get $dst) (i32.const 0)
                    (i32.mul (local.get $lo) (local.get $pix)))))
                (call $copy
                  (i32.add (local.get $dst) (i32.mul (local.get $lo) (local.get $pix)))
                  (i32.add (local.get $image) (i32.mul (local.get $pix)
                    (i32.add (i32.mul (local.get $yIn) (local.get $w))
                      (i32.add (local.get $x0) (local.get $lo)))))
                  (i32.mul (i32.sub (local.get $hi) (local.get $lo)) (local.get $pix)))
                (if (i32.lt_s (local.get $hi) (local.get $kw))
                  (then (memory.fill
                    (i32.add (local.get $dst) (i32.mul (local.get $hi) (local.get $pix)))
                    (i32.const 0)
                    (i32.mul (i32.sub (local.get $kw) (local.get $hi)) (local.get $pix)))))))
            (local.set $dst (i32.add (local.get $dst) (local.get $run)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $i_loop)))
          (local.set $xo (i32.add (local.get $xo) (i32.const 1)))
          (br $x_loop)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $y_loop)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $b_loop))))

  ;; dx[b, y·sh + i − padTop, xo·sw + j − padLeft, c] += cols[(b, y, xo), (i, j, c)] for the
  ;; in-bounds taps, rows of cols in order, images first … first + count − 1.
  (func (export "col2im")
    (param $cols i32) (param $dx i32) (param $first i32) (param $count i32)
    (param $h i32) (param $w i32) (param $ci i32) (param $oh i32) (param $ow i32)
    (param $kh i32) (param $kw i32) (param $sh i32) (param $sw i32)
    (param $padTop i32) (param $padLeft i32)
    (local $b i32) (local $y i32) (local $xo i32) (local $i i32)
    (local $image i32) (local $x0 i32) (local $lo i32) (local $hi i32) (local $yIn i32)
    (local $run i32) (local $pix i32) (local $src i32)
    (local.set $pix (i32.shl (local.get $ci) (i32.const 2)))
    (local.set $run (i32.mul (local.get $kw) (local.get $pix)))
    (local.set $src (local.get $cols))
    (local.set $b (local.get $first))
    (block $b_done (loop $b_loop
      (br_if $b_done (i32.ge_u (local.get $b) (i32.add (local.get $first) (local.get $count))))
      (local.set $image (i32.add (local.get $dx)
        (i32.mul (local.get $b) (i32.mul (i32.mul (local.get $h) (local.get $w)) (local.get $pix)))))
      (local.set $y (i32.const 0))
      (block $y_done (loop $y_loop
        (br_if $y_done (i32.ge_s (local.get $y) (local.get $oh)))
        (local.set $xo (i32.const 0))
        (block $x_done (loop $x_loop
          (br_if $x_done (i32.ge_s (local.get $xo) (local.get $ow)))
          (local.set $x0 (i32.sub (i32.mul (local.get $xo) (local.get $sw)) (local.get $padLeft)))
          (local.set $lo (select (i32.const 0) (i32.sub (i32.const 0) (local.get $x0))
            (i32.ge_s (local.get $x0) (i32.const 0))))
          (local.set $hi (select (local.get $kw) (i32.sub (local.get $w) (local.get $x0))
            (i32.le_s (local.get $kw) (i32.sub (local.get $w) (local.get $x0)))))
          (local.set $i (i32.const 0))
          (block $i_done (loop $i_loop
            (br_if $i_done (i32.ge_s (local.get $i) (local.get $kh)))
            (local.set $yIn (i32.sub
              (i32.add (i32.mul (local.get $y) (local.get $sh)) (local.get $i))
              (local.get $padTop)))
            (if (i32.eqz (i32.or (i32.or (i32.lt_s (local.get $yIn) (i32.const 0))
                  (i32.ge_s (local.get $yIn) (local.get $h)))
                  (i32.le_s (local.get $hi) (local.get $lo))))
              (then
                (call $add
                  (i32.add (local.get $image) (i32.mul (local.get $pix)
                    (i32.add (i32.mul (local.get $yIn) (local.get $w))
                      (i32.add (local.get $x0) (local.get $lo)))))
                  (i32.add (local.get $src) (i32.mul (local.get $lo) (local.get $pix)))
                  (i32.mul (i32.sub (local.get $hi) (local.get $lo)) (local.get $pix)))))
            (local.set $src (i32.add (local.get $src) (local.get $run)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $i_loop)))
          (local.set $xo (i32.add (local.get $xo) (i32.const 1)))
          (br $x_loop)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $y_loop)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $b_loop))))
)
