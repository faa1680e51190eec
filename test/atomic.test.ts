import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeAllSync, writeFileAtomic, writeJsonAtomic } from "../src/engine/serialize/atomic.ts";

let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "vlpkit-atomic-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function sub(name: string): string {
  const d = join(dir, name);
  rmSync(d, { recursive: true, force: true });
  return mkdtempSync(d + "-");
}

describe("writeFileAtomic", () => {
  test("creates and replaces files, leaving no temp files behind", () => {
    const d = sub("basic");
    const p = join(d, "out.bin");
    writeFileAtomic(p, "first");
    assert.equal(readFileSync(p, "utf8"), "first");
    writeFileAtomic(p, new Uint8Array([1, 2, 3]));
    assert.deepEqual([...readFileSync(p)], [1, 2, 3]);
    writeFileAtomic(p, (fd) => {
      writeAllSync(fd, Buffer.from("a"));
      writeAllSync(fd, Buffer.from("bc"));
    });
    assert.equal(readFileSync(p, "utf8"), "abc");
    assert.deepEqual(readdirSync(d), ["out.bin"]);
  });

  test("a writer that throws halfway leaves the old file intact and removes the temp file", () => {
    const d = sub("throws");
    const p = join(d, "model.safetensors");
    writeFileSync(p, "old contents");
    let wrote = false;
    assert.throws(
      () =>
        writeFileAtomic(p, (fd) => {
          writeAllSync(fd, Buffer.alloc(1 << 16, 0x41));
          wrote = true;
          throw new Error("disk full (simulated)");
        }),
      /disk full \(simulated\)/,
    );
    assert.ok(wrote, "the writer ran and wrote data before failing");
    assert.equal(readFileSync(p, "utf8"), "old contents");
    assert.deepEqual(readdirSync(d), ["model.safetensors"]);
  });

  test("a failing first write to a new path creates nothing", () => {
    const d = sub("new");
    assert.throws(() => writeFileAtomic(join(d, "x.json"), () => { throw new Error("boom"); }), /boom/);
    assert.deepEqual(readdirSync(d), []);
  });

  test("missing directory is an error naming the path", () => {
    const p = join(dir, "no-such-dir", "f.txt");
    assert.throws(() => writeFileAtomic(p, "x"), (e: Error) => e.message.startsWith(`${p}: cannot create temp file`));
  });

  test("keeps the permissions of the file it replaces", () => {
    const d = sub("mode");
    const p = join(d, "secret.json");
    writeFileSync(p, "{}");
    chmodSync(p, 0o600);
    writeFileAtomic(p, "{\"a\":1}");
    assert.equal(statSync(p).mode & 0o777, 0o600);
    assert.equal(readFileSync(p, "utf8"), "{\"a\":1}");
  });

  test("writing through a symlink replaces the target and keeps the link", () => {
    const d = sub("link");
    const target = join(d, "real.txt");
    const link = join(d, "link.txt");
    writeFileSync(target, "old");
    symlinkSync(target, link);
    writeFileAtomic(link, "new");
    assert.ok(lstatSync(link).isSymbolicLink());
    assert.equal(readFileSync(target, "utf8"), "new");
  });
});

describe("writeJsonAtomic", () => {
  test("writes indented JSON with a trailing newline", () => {
    const d = sub("json");
    const p = join(d, "state.json");
    writeJsonAtomic(p, { step: 3, lr: [0.1, 0.01] });
    const text = readFileSync(p, "utf8");
    assert.ok(text.endsWith("}\n"));
    assert.deepEqual(JSON.parse(text), { step: 3, lr: [0.1, 0.01] });
    writeJsonAtomic(p, [1], { indent: 0 });
    assert.equal(readFileSync(p, "utf8"), "[1]\n");
  });

  test("rejects values JSON cannot represent, without touching the file", () => {
    const d = sub("json-bad");
    const p = join(d, "state.json");
    writeFileSync(p, "keep");
    assert.throws(() => writeJsonAtomic(p, undefined), /state\.json: value is not JSON-serializable/);
    assert.throws(() => writeJsonAtomic(p, { n: 1n }), /BigInt/);
    assert.equal(readFileSync(p, "utf8"), "keep");
    assert.deepEqual(readdirSync(d), ["state.json"]);
  });
});
