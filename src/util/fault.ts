/**
 * Crash points for the fault tests: when LIFEBOAT_FAULT names a point, the
 * process kills itself there with SIGKILL, as a power cut or OOM kill would,
 * without a chance to clean up. "name:N" fires on the Nth pass. Unset, this
 * is one string comparison.
 */
const spec = process.env.LIFEBOAT_FAULT;
const [target, nth] = spec ? [spec.split(':')[0], Number(spec.split(':')[1] ?? 1)] : [undefined, 0];
let passes = 0;

export function faultPoint(name: string): void {
  if (name !== target) return;
  if (++passes >= nth) process.kill(process.pid, 'SIGKILL');
}
