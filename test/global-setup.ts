import { execFileSync } from 'node:child_process';

/** The CLI tests run bin/lifeboat, which runs dist/: build it (and copy the console's files) from the current sources first. */
export default function setup(): void {
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
}
