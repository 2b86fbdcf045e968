import fs from 'node:fs';
import path from 'node:path';

/**
 * A psql for the fake engine's sessions (host processes): it answers the
 * questions of docker/postgres-backup.ts as a PostgreSQL 15 with its data in
 * /var/lib/postgresql/data would, and notes its pid in $STARTS each time it
 * starts (one line per session). While the file $STARTS.hang exists it
 * answers nothing for 3 s a line.
 */
const SCRIPT = `#!/bin/sh
echo $$ >> "$STARTS"
while read -r line; do
  # a database that stops answering (a lock, a stall) for a few seconds
  if [ -e "$STARTS.hang" ]; then sleep 3; fi
  case "$line" in
    '\\echo '*) echo "\${line#\\\\echo }" ;;
    *server_version_num*) echo 150004 ;;
    *data_directory*) echo /var/lib/postgresql/data ;;
    *pg_backup_start*) echo 0/2000028 ;;
    *pg_current_wal_flush_lsn*) echo "0/3000100|000000010000000000000003|256|7445566778899001122" ;;
    *pg_control_system*) echo "0/2000028|000000010000000000000002|7445566778899001122" ;;
  esac
done
`;

/** Puts the fake psql first on PATH; returns the file its sessions' pids go to, and how to undo it. */
export function installFakePsql(dir: string): { readonly starts: () => string[]; hang(on: boolean): void; restore(): void } {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(path.join(bin, 'psql'), SCRIPT, { mode: 0o755 });
  const file = path.join(dir, 'starts');
  const saved = process.env.PATH;
  process.env.PATH = `${bin}:${saved}`;
  process.env.STARTS = file;
  return {
    starts: () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n') : []),
    hang: (on) => (on ? fs.writeFileSync(`${file}.hang`, '') : fs.rmSync(`${file}.hang`, { force: true })),
    restore: () => {
      process.env.PATH = saved;
      delete process.env.STARTS;
    },
  };
}
