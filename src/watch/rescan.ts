/**
 * A journal path ending in this segment asks for a full rescan of that
 * directory and everything below it: what a crowded directory is recorded
 * as. Apart from the watcher: the archiver, which reads journal takes,
 * needs nothing else of it.
 */
export const RESCAN = '*';
