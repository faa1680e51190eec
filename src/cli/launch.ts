// Starts the worker processes of a data-parallel run on this machine, like torchrun: each worker
// gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT (and one
// libtorch thread per core it can have, unless VLP_NUM_THREADS is set). Several machines: run the
// launcher on each with the same nnodes/master address and port and its own nodeRank.
//
// If a worker fails (non-zero exit or a signal), the others are given a grace period to notice on
// their own (their next collective fails at once when a peer is gone) and are then terminated; the
// launcher reports which rank failed first and how, and exits non-zero.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { availableParallelism } from "node:os";
import { createInterface } from "node:readline";

export interface LaunchOptions {
  /** Worker processes on this machine. */
  nproc: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  /** Rank 0's rendezvous port; default: a free port (one machine) or 29500 (several). */
  masterPort?: number;
  /** The TypeScript (or JavaScript) file each worker runs, and its arguments. */
  script: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** After a worker fails, how long the others may take to exit on their own (default 10 s). */
  graceMs?: number;
  /** Called with each worker's pid as it starts. */
  onStart?: (rank: number, pid: number) => void;
  /** Where the launcher's own messages go (default stderr). */
  log?: (line: string) => void;
}

export interface LaunchResult {
  /** 0 when every worker exited with 0. */
  code: number;
  /** The first failure, e.g. "rank 1 (pid 123) was killed by SIGKILL". */
  failure?: string;
  masterPort: number;
}

/** A TCP port that is free on `host` right now. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

const SIGNAL_CODES: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15, SIGABRT: 6 };

/** Run `nproc` workers; resolves when all have exited. */
export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  const log = o.log ?? ((l: string) => process.stderr.write(l + "\n"));
  if (!Number.isInteger(o.nproc) || o.nproc < 1) throw new Error(`--nproc: expected a positive integer, got ${o.nproc}`);
  if (!Number.isInteger(nnodes) || nnodes < 1) throw new Error(`--nnodes: expected a positive integer, got ${nnodes}`);
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) throw new Error(`--node-rank ${nodeRank}: expected 0..${nnodes - 1}`);
  const masterAddr = o.masterAddr ?? "127.0.0.1";
  if (nnodes > 1 && o.masterAddr === undefined) throw new Error("--nnodes > 1 needs --master-addr (the address of the machine of node rank 0)");
  const masterPort = o.masterPort ?? (nnodes > 1 ? 29500 : await freePort(masterAddr));
  const world = nnodes * o.nproc;
  const threads = String(Math.max(1, Math.floor(availableParallelism() / o.nproc)));
  // workers run the script through tsx's loader, resolved from here (they may start in any folder)
  const loader = import.meta.resolve("tsx");

  const children: { rank: number; child: ChildProcess; exited: boolean }[] = [];
  let failure: string | undefined;
  let failureCode = 0;
  let killTimer: NodeJS.Timeout | undefined;

  const stopAll = (why: string) => {
    if (killTimer) return;
    log(`vlp launch: ${why}; stopping the other workers`);
    killTimer = setTimeout(() => {
      for (const c of children) if (!c.exited) c.child.kill("SIGTERM");
      setTimeout(() => {
        for (const c of children) if (!c.exited) c.child.kill("SIGKILL");
      }, 5000).unref();
    }, o.graceMs ?? 10_000);
    killTimer.unref();
  };
  const forward = (sig: NodeJS.Signals) => () => {
    failure ??= `the launcher got ${sig}`;
    failureCode ||= 128 + (SIGNAL_CODES[sig] ?? 1);
    for (const c of children) if (!c.exited) c.child.kill(sig);
  };
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);

  const done: Promise<void>[] = [];
  for (let local = 0; local < o.nproc; local++) {
    const rank = nodeRank * o.nproc + local;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...o.env,
      RANK: String(rank),
      WORLD_SIZE: String(world),
      LOCAL_RANK: String(local),
      LOCAL_WORLD_SIZE: String(o.nproc),
      GROUP_RANK: String(nodeRank),
      MASTER_ADDR: masterAddr,
      MASTER_PORT: String(masterPort),
      VLP_LAUNCHED: "1",
    };
    env.VLP_NUM_THREADS ??= threads;
    const child = spawn(process.execPath, ["--import", loader, o.script, ...o.args], { env, stdio: ["ignore", "pipe", "pipe", "ipc"] });
    const entry = { rank, child, exited: false };
    children.push(entry);
    if (child.pid !== undefined) o.onStart?.(rank, child.pid);
    // rank 0's output passes through untouched (progress bar); the others' lines are prefixed
    if (rank === 0) {
      child.stdout!.pipe(process.stdout, { end: false });
      child.stderr!.pipe(process.stderr, { end: false });
    } else {
      createInterface({ input: child.stdout! }).on("line", (l) => process.stdout.write(`[rank ${rank}] ${l}\n`));
      createInterface({ input: child.stderr! }).on("line", (l) => process.stderr.write(`[rank ${rank}] ${l}\n`));
    }
    done.push(
      new Promise<void>((resolve) => {
        child.on("error", (e) => {
          entry.exited = true;
          failure ??= `rank ${rank} could not start: ${e.message}`;
          failureCode ||= 1;
          stopAll(failure);
          resolve();
        });
        child.on("exit", (code, signal) => {
          entry.exited = true;
          if (code !== 0) {
            const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
            if (!failure) {
              failure = `rank ${rank} (pid ${child.pid}) ${how}`;
              failureCode = signal ? 128 + (SIGNAL_CODES[signal] ?? 1) : code ?? 1;
              stopAll(failure);
            } else {
              log(`vlp launch: rank ${rank} (pid ${child.pid}) ${how}`);
            }
          }
          resolve();
        });
      }),
    );
  }
  log(`vlp launch: ranks ${children.map((c) => `${c.rank} (pid ${c.child.pid})`).join(", ")} of ${world}, rendezvous tcp://${masterAddr}:${masterPort}`);
  await Promise.all(done);
  if (killTimer) clearTimeout(killTimer);
  process.off("SIGINT", onInt);
  process.off("SIGTERM", onTerm);
  return { code: failure ? failureCode || 1 : 0, failure, masterPort };
}

/**
 * In a launched worker: exit when the launcher goes away (its IPC channel closes), so that no
 * worker outlives a killed launcher; the channel does not keep the worker alive.
 */
export function exitWithLauncher(): void {
  if (!process.env.VLP_LAUNCHED || !process.send) return;
  process.on("disconnect", () => {
    process.stderr.write(`rank ${process.env.RANK}: the launcher is gone; exiting\n`);
    process.exit(1);
  });
  process.channel?.unref();
}
