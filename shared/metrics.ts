// The metrics message the coordinator publishes on agon.<run>.metrics once per
// phase and appends to metrics.jsonl (schema 1; docs/ARCHITECTURE.md "Metrics").
// One definition for every reader: agon local, agon watch, the dashboard.
export interface MetricsMessage {
  schema: 1;
  runId: string;
  step: number;
  /** Phase index within the step: 0..kD-1 train D, then G. */
  phase: number;
  kind: "D" | "G";
  /** Losses and D outputs; null where the phase has none (JSON also turns NaN into null). */
  dLoss: number | null;
  gLoss: number | null;
  dReal: number | null;
  dFake: number | null;
  gradNorm: number;
  versions: { G: number; D: number };
  /** Steps the run is configured for. */
  steps: number;
  /** True when this phase completed step `step`. */
  stepDone: boolean;
  workers: number;
  time: string;
  phaseSeconds: number;
  /** The busiest worker's compute time in this phase. */
  computeSeconds: number;
  /** Running totals of gradient bytes received and parameter bytes sent. */
  bytesIn: number;
  bytesOut: number;
}
