/**
 * The live-database DR path end to end: PostgreSQL under pgbench on host A,
 * backed up by its own protocol and replicated to B's warm standby, A's agent
 * and database killed mid-load, `recover --from a` on B. The recovered
 * database answers, checks clean, keeps pgbench's invariants and holds the
 * heartbeats of the last replicated snapshot; the database was never frozen.
 * (bench/live-db.ts runs the same scenario longer and prints the figures.)
 */
import { expect, it } from 'vitest';
import { cleanup as cleanupDirs } from '../cli/run.ts';
import { cleanup, ensureEngine } from '../docker/harness.ts';
import { runFailover } from '../lib/pg-failover.ts';

it('recovers a PostgreSQL lost under load on its peer: whole transactions, a recent heartbeat, never paused', async () => {
  await ensureEngine();
  try {
    const r = await runFailover({ scale: 2, clients: 2, seconds: 15, consistency: 'postgres', rpo: '5s', rounds: 0, log: () => {} });
    const [tellers, branches, accounts, history] = r.balances;
    expect(tellers).toBe(branches);
    expect(branches).toBe(accounts);
    expect(accounts).toBe(history);
    expect(r.pausesMs).toEqual([]);
    // the peer held the volume all through the measured phase, and what was lost is what came after its newest snapshot
    expect(r.peerAgesS.length).toBeGreaterThan(5);
    expect(r.lossS).toBeGreaterThanOrEqual(0);
    expect(r.lossS).toBeLessThan(Math.max(...r.peerAgesS) + 15);
    expect(r.rto.imagesMs).toBe(0);
    expect(r.bytesRestored).toBeGreaterThan(20 * 1024 * 1024);
  } finally {
    await cleanup();
    await cleanupDirs();
  }
}, 900_000);
