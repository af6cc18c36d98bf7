// Whether the blas backend can run here (koffi and OpenBLAS load), for tests that skip without it.
import { loadBlas } from "../../shared/blas.js";

/** True when OpenBLAS loads through koffi; CI installs libopenblas0-pthread, so there it is. */
export function blasAvailable(): boolean {
  try {
    loadBlas();
    return true;
  } catch {
    return false;
  }
}
