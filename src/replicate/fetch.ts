import { ProtocolError } from '../errors/errors.ts';
import type { StoredBlob } from '../repo/mend.ts';
import type { Repository } from '../repo/repository.ts';
import { decodeBlob, decodeFetched, encodeIds, type IdRef, Msg, QUERY_BATCH } from './messages.ts';
import { expect, greet } from './push.ts';
import type { PeerConnection } from './transport.ts';

/**
 * Asks a peer for blobs from its replica of this repository (the peer serves
 * a source from that source's own replica only): for `repair`. Each blob the
 * peer has goes to `onBlob`, which must prove it before trusting it; returns
 * the ids (hex) the peer does not hold.
 */
export async function fetchBlobs(conn: PeerConnection, repo: Repository, ids: readonly IdRef[], onBlob: (b: StoredBlob) => void): Promise<string[]> {
  await greet(conn, repo);
  const missing: string[] = [];
  for (let i = 0; i < ids.length; i += QUERY_BATCH) {
    const batch = ids.slice(i, i + QUERY_BATCH);
    const asked = new Set(batch.map((r) => r.id.toString('latin1')));
    await conn.send(Msg.fetch, encodeIds(batch));
    for (;;) {
      const f = await conn.receive();
      if (f.type === Msg.blob) {
        const b = decodeBlob(f.payload);
        if (!asked.delete(b.id.toString('latin1'))) throw new ProtocolError('the peer sent a blob that was not asked for');
        onBlob(b);
        continue;
      }
      missing.push(...decodeFetched(await expect(conn, Msg.fetched, f)));
      break;
    }
  }
  conn.close();
  return missing;
}
