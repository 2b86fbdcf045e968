/** Bytes the tasks read or wrote since the worker last asked: what decides its next major collection. */
let bytes = 0;

/** Called by a task for the bytes it moved through buffers. */
export function churned(n: number): void {
  bytes += n;
}

export function takeChurn(): number {
  const n = bytes;
  bytes = 0;
  return n;
}
