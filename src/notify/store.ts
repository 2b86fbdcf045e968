import type { AgentCatalog } from '../catalog/agent-catalog.ts';

/** Where the Notifier keeps what each entry was last told, so a restart does not tell it again. */
export interface AlertStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
}

/** An AlertStore in the agent catalog's meta table, under "notify." keys. */
export function catalogAlertStore(catalog: Pick<AgentCatalog, 'getMeta' | 'setMeta'>): AlertStore {
  return {
    get: (key) => catalog.getMeta(`notify.${key}`),
    set: (key, value) => catalog.setMeta(`notify.${key}`, value),
  };
}
