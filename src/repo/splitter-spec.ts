/** How a snapshot's files were cut into blocks; recorded so the next backup of the same source reuses it. */
export interface SplitterSpec {
  readonly kind: 'fixed' | 'cdc';
  readonly size: number;
}
