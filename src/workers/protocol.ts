/**
 * Messages between the main thread and the workers. Tasks read and write
 * files themselves, so file contents never cross threads: payloads carry
 * paths (or descriptor numbers), ids and small results only.
 */
export interface WorkerData {
  /** URLs of the task modules to load. */
  readonly modules: readonly string[];
  readonly init: unknown;
}

export interface Request {
  readonly op: string;
  readonly payload: unknown;
}

export type Reply =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: { readonly code: string; readonly message: string } };

/**
 * What a task module exports. Each worker imports every module of its pool,
 * calls open() with the pool's init before any task, and close() when the
 * pool closes. Task names are unique across a pool's modules.
 */
export interface TaskModule {
  /** Each task takes its own payload type, checked by the typed call its module exports (jobs.ts). */
  readonly tasks: Readonly<Record<string, (payload: any) => unknown>>;
  readonly open?: (init: unknown) => void;
  readonly close?: () => void;
}
