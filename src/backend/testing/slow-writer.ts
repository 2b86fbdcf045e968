/** A process that writes a 256 MiB pack through the local backend, for a test to kill mid-write. */
import { LocalBackend } from '../local.ts';

const [dir, name] = process.argv.slice(2) as [string, string];
process.stdout.write('writing\n');
await new LocalBackend(dir).writeOnce('pack', name, Buffer.alloc(256 * 1024 * 1024, 7));

