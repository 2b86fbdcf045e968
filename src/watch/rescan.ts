/**
 * A journal path ending in this segment asks for a full rescan of that
 * directory and everything below it: what a crowded directory is recorded
 * as. Apart from the watcher: the archiver, which reads journal takes,
 * needs nothing else of it.
 */
export const RESCAN = '*';

/**
 * A journal path ending in this segment asks for every entry of that
 * directory to be looked at again (lstat), not what is below its
 * subdirectories: what a directory whose watch rested is recorded as.
 */
export const RESTAT = '?';
