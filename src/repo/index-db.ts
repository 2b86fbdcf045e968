/**
 * The key of a repository's index connection on a Store. Only src/repo/
 * imports it (the architecture test pins that): everything else reads and
 * writes the index through the repository's functions, never in SQL.
 */
export const INDEX_DB: unique symbol = Symbol('repository index');
