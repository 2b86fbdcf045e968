import { MemoryBackend } from './memory.ts';
import { backendConformance } from './testing/conformance.ts';

backendConformance('memory', async () => {
  const backend = new MemoryBackend();
  return { backend, reopen: () => backend, cleanup: async () => {} };
});
