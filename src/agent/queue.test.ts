import { describe, expect, it } from 'vitest';
import { JobCancelledError, JobQueue } from './queue.ts';

const later = () => {
  let resolve!: () => void;
  const p = new Promise<void>((r) => (resolve = r));
  return { p, resolve };
};

describe('JobQueue', () => {
  it('runs one job at a time, in order', async () => {
    const q = new JobQueue();
    const order: string[] = [];
    const gate = later();
    const a = q.run('a', async () => {
      order.push('a start');
      await gate.p;
      order.push('a end');
      return 1;
    });
    const b = q.run('b', async () => {
      order.push('b');
      return 2;
    });
    await Promise.resolve();
    expect(q.running).toBe('a');
    expect(q.waiting).toEqual(['b']);
    gate.resolve();
    expect(await a).toBe(1);
    expect(await b).toBe(2);
    expect(order).toEqual(['a start', 'a end', 'b']);
  });

  it('a failing job rejects its caller and the queue goes on', async () => {
    const q = new JobQueue();
    const bad = q.run('bad', async () => {
      throw new Error('boom');
    });
    const good = q.run('good', async () => 'ok');
    await expect(bad).rejects.toThrow('boom');
    expect(await good).toBe('ok');
  });

  it('close() cancels waiting jobs, waits for the running one, and refuses new ones', async () => {
    const q = new JobQueue();
    const gate = later();
    let finished = false;
    const running = q.run('running', async () => {
      await gate.p;
      finished = true;
    });
    const waiting = q.run('waiting', async () => 'never');
    await Promise.resolve();
    const closed = q.close();
    await expect(waiting).rejects.toBeInstanceOf(JobCancelledError);
    await expect(q.run('late', async () => 1)).rejects.toBeInstanceOf(JobCancelledError);
    let closedYet = false;
    void closed.then(() => (closedYet = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(closedYet).toBe(false);
    gate.resolve();
    await closed;
    await running;
    expect(finished).toBe(true);
  });
});
