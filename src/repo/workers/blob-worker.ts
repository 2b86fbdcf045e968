import { parentPort, workerData } from 'node:worker_threads';
import { blobId, type MasterKeys, seal, unseal } from '../crypto.ts';
import { BLOB_ID_BYTES, type BlobId } from '../ids.ts';
import type { HashReply, Job, Reply, SealReply, UnsealReply, WorkerInit } from './protocol.ts';

const init = workerData as WorkerInit;
const keys: MasterKeys = { enc: Buffer.from(init.enc), mac: Buffer.from(init.mac) };
const opts = { level: init.level };

function concat(parts: readonly Buffer[]): { buf: ArrayBuffer; lengths: number[] } {
  let total = 0;
  for (const p of parts) total += p.length;
  const buf = new ArrayBuffer(total);
  const view = new Uint8Array(buf);
  const lengths: number[] = [];
  let o = 0;
  for (const p of parts) {
    view.set(p, o);
    o += p.length;
    lengths.push(p.length);
  }
  return { buf, lengths };
}

const idAt = (ids: Buffer, i: number) => ids.subarray(i * BLOB_ID_BYTES, (i + 1) * BLOB_ID_BYTES) as BlobId;

function run(job: Job): { value: HashReply | SealReply | UnsealReply; transfer: ArrayBuffer[] } {
  switch (job.op) {
    case 'hash': {
      const data = Buffer.from(job.buf);
      const ids = Buffer.from(new ArrayBuffer(job.cuts.length * BLOB_ID_BYTES));
      const sealed: Buffer[] = [];
      let start = 0;
      job.cuts.forEach((end, i) => {
        const block = data.subarray(start, end);
        const id = blobId(keys, block);
        ids.set(id, i * BLOB_ID_BYTES);
        if (job.seal) sealed.push(seal(keys, id, job.type, block, opts));
        start = end;
      });
      const packed = job.seal ? concat(sealed) : null;
      const transfer = [job.buf, ids.buffer as ArrayBuffer];
      if (packed) transfer.push(packed.buf);
      return {
        value: { buf: job.buf, ids: ids.buffer as ArrayBuffer, sealed: packed?.buf ?? null, lengths: packed?.lengths ?? null },
        transfer,
      };
    }
    case 'seal': {
      const data = Buffer.from(job.buf);
      const ids = Buffer.from(job.ids);
      const packed = concat(job.ranges.map(([s, e], i) => seal(keys, idAt(ids, i), job.type, data.subarray(s, e), opts)));
      return { value: { buf: job.buf, sealed: packed.buf, lengths: packed.lengths }, transfer: [job.buf, packed.buf] };
    }
    case 'unseal': {
      const data = Buffer.from(job.buf);
      const ids = Buffer.from(job.ids);
      let o = 0;
      const plain = job.lengths.map((len, i) => {
        const out = unseal(keys, idAt(ids, i), job.type, data.subarray(o, o + len), job.checkId);
        o += len;
        return out;
      });
      const packed = concat(plain);
      return { value: { plain: packed.buf, lengths: packed.lengths }, transfer: [packed.buf] };
    }
  }
}

parentPort!.on('message', (job: Job) => {
  let reply: Reply;
  let transfer: ArrayBuffer[] = [];
  try {
    const done = run(job);
    reply = { ok: true, value: done.value };
    transfer = done.transfer;
  } catch (err) {
    const e = err as Error & { code?: string };
    reply = { ok: false, error: { name: e.name, code: e.code ?? 'LB_ERR_INTERNAL', message: e.message } };
  }
  parentPort!.postMessage(reply, transfer);
});
