/** Accepts an id as `lifeboat id` prints it, or with colons, dashes, spaces or upper case; undefined if malformed. */
export function parseId(text: string): string | undefined {
  const hex = text.replace(/[\s:-]/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}
