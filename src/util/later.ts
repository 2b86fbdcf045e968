/**
 * Work dispatched but not finished. Boxed, because an async function that
 * returned the promise itself would wait for it, and a walk that hands work
 * to the workers must go on instead.
 */
export interface Later<T> {
  readonly done: Promise<T>;
}
