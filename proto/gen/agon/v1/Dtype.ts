// Original file: proto/agon.proto

/**
 * How the values of a gradient or parameter array are encoded (little-endian).
 * It must be the run config's transport.gradients / transport.params.
 */
export const Dtype = {
  DTYPE_FP32: 'DTYPE_FP32',
  /**
   * bfloat16: float32's top 16 bits, rounded to nearest even.
   */
  DTYPE_BF16: 'DTYPE_BF16',
  /**
   * IEEE 754 half precision, rounded to nearest even, saturating at ±65504.
   */
  DTYPE_FP16: 'DTYPE_FP16',
  /**
   * IEEE 754 double: the float64 feature statistics of an evaluation microtask only.
   */
  DTYPE_FP64: 'DTYPE_FP64',
} as const;

/**
 * How the values of a gradient or parameter array are encoded (little-endian).
 * It must be the run config's transport.gradients / transport.params.
 */
export type Dtype =
  | 'DTYPE_FP32'
  | 0
  /**
   * bfloat16: float32's top 16 bits, rounded to nearest even.
   */
  | 'DTYPE_BF16'
  | 1
  /**
   * IEEE 754 half precision, rounded to nearest even, saturating at ±65504.
   */
  | 'DTYPE_FP16'
  | 2
  /**
   * IEEE 754 double: the float64 feature statistics of an evaluation microtask only.
   */
  | 'DTYPE_FP64'
  | 3

/**
 * How the values of a gradient or parameter array are encoded (little-endian).
 * It must be the run config's transport.gradients / transport.params.
 */
export type Dtype__Output = typeof Dtype[keyof typeof Dtype]
