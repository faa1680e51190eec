// Runs a command with TMPDIR set to a fresh folder and removes that folder afterwards, whatever the
// outcome: the tests write their worlds, runs and checkpoints under os.tmpdir() (up to ~0.5 GB a
// file), and a folder per test run is the one place they can all be cleaned from.
//   node scripts/with-tmpdir.mjs CMD ARGS...
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [cmd, ...args] = process.argv.slice(2);
if (!cmd) {
  console.error("usage: node scripts/with-tmpdir.mjs CMD ARGS...");
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), "vlp-test-run-"));
const clean = () => rmSync(dir, { recursive: true, force: true });
const child = spawn(cmd, args, { stdio: "inherit", env: { ...process.env, TMPDIR: dir } });
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code, signal) => {
  clean();
  process.exit(code ?? (signal ? 1 : 0));
});
