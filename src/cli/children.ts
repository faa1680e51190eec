// Child processes of a command that fans its work out (`vlp demo`'s jobs, experiments/compare.ts's
// runs): `pool` runs at most N tasks at once, `runChild` starts one `node` child whose output goes to
// a log file as it comes (and, line by line, to a callback), and which dies with this process.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { constants } from "node:os";

const live = new Set<ChildProcess>();
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
let hooked = false;

/** A child left behind would go on writing beside a restarted parent's: they go with it. */
function onSignal(sig: NodeJS.Signals): void {
  for (const c of live) c.kill("SIGTERM");
  process.exit(128 + constants.signals[sig]);
}

export interface ChildOptions {
  /** The file the child's stdout and stderr go to. */
  log: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Each non-empty line of the child's output, as it comes (e.g. echoed with the job's id). */
  onLine?: (line: string) => void;
}

/** Runs `node <args>` as a child process; resolves with its exit code once its log is written. */
export function runChild(args: string[], o: ChildOptions): Promise<number> {
  if (!hooked) for (const sig of SIGNALS) process.on(sig, onSignal);
  hooked = true;
  return new Promise((res, rej) => {
    const out = createWriteStream(o.log);
    const child = spawn(process.execPath, args, { cwd: o.cwd, env: o.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    live.add(child);
    for (const stream of [child.stdout, child.stderr]) {
      let rest = "";
      stream.on("data", (d: Buffer) => {
        out.write(d);
        if (!o.onLine) return;
        const lines = (rest + d.toString()).split("\n");
        rest = lines.pop()!;
        for (const l of lines) if (l.trim()) o.onLine(l);
      });
    }
    child.on("error", (e) => {
      live.delete(child);
      out.end(() => rej(new Error(`${args.join(" ")}: ${e.message}`)));
    });
    child.on("close", (code, signal) => {
      live.delete(child);
      out.end(() => res(code ?? 128 + (signal ? constants.signals[signal] : 0)));
    });
  });
}

/**
 * Runs `fn` on every item, at most `jobs` at once, in the items' order. A failing item does not stop
 * the others: the failures (item and error) are returned once every item ran.
 */
export async function pool<T>(items: T[], jobs: number, fn: (x: T) => Promise<void>): Promise<{ item: T; error: Error }[]> {
  const failed: { item: T; error: Error }[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, async () => {
    while (next < items.length) {
      const x = items[next++];
      try {
        await fn(x);
      } catch (e) {
        failed.push({ item: x, error: e as Error });
      }
    }
  }));
  return failed;
}
