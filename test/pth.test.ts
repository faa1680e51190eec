import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  PickleError,
  PyOpaque,
  findBuiltinGlobal,
  getPyState,
  isTuple,
  unpickle,
  unpickleAt,
} from "../src/engine/serialize/pickle.ts";
import { ZipReader, gatherStrided, loadPth, loadPthStateDict } from "../src/engine/serialize/pth.ts";
import { type RawTensor, isRawTensor } from "../src/engine/serialize/raw.ts";
import { pthZip } from "./fixtures/hostile.ts";

const PYTHON = "/usr/bin/python3";
const torchCheck = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
const SKIP_TORCH = torchCheck.status === 0 ? false : `${PYTHON} cannot import torch; skipping torch.save cross-checks`;
const pyCheck = spawnSync(PYTHON, ["-c", "import pickle"], { encoding: "utf8" });
const SKIP_PY = pyCheck.status === 0 ? false : `${PYTHON} is not available; skipping Python pickle cross-checks`;

function python(script: string, ...args: string[]): string {
  return execFileSync(PYTHON, ["-c", script, ...args], { encoding: "utf8", maxBuffer: 64 << 20 });
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

// ---------------------------------------------------------------------------
// Fixtures written by torch.save

const GENERATE = String.raw`
import sys, os, json, pickle, zipfile, collections, io
import torch

out = sys.argv[1]
torch.manual_seed(0)

base = torch.randn(4, 6)
shared_i64 = torch.arange(12).reshape(3, 4)
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2, bias=False))
model[1].running_mean.uniform_()
sd = model.state_dict()

obj = {
    "f32": torch.randn(3, 5),
    "f64": torch.randn(2, 2, dtype=torch.float64),
    "f16": torch.randn(7).half(),
    "bf16": torch.randn(2, 3).bfloat16(),
    "i64": torch.tensor([-(2**62), -1, 0, 1, 2**62]),
    "i32": torch.arange(-5, 5, dtype=torch.int32),
    "i16": torch.arange(-300, 300, 100, dtype=torch.int16),
    "i8": torch.arange(-128, 128, 37, dtype=torch.int8),
    "u8": torch.arange(0, 250, 10, dtype=torch.uint8),
    "bool": torch.tensor([True, False, True, True]),
    "scalar": torch.tensor(3.5),
    "empty": torch.zeros(0, 3),
    "base": base,
    "transposed": base.t(),
    "rows": base[1:3],
    "column": base[:, 2],
    "every_other": base[::2, 1::3],
    "i64_t": shared_i64.t(),
    "i64_view": shared_i64[1],
    "f16_t": torch.randn(3, 5).half().t(),
    "bool_t": (torch.randn(4, 3) > 0).t(),
    "expanded": torch.randn(3, 1).expand(3, 4),
    "param": torch.nn.Parameter(torch.randn(2, 2)),
    "nested": {"inner": {"t": torch.ones(2, dtype=torch.int64)}, "epoch": 3, "lr": 0.5, "name": "run",
               "list": [1, 2.5, None, True], "tuple": (1, "a")},
    "model": sd,
}

def flat(prefix, v, acc):
    if isinstance(v, torch.Tensor):
        t = v.detach().contiguous()
        acc[prefix] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                       "hex": t.reshape(-1).view(torch.uint8).numpy().tobytes().hex()}
    elif isinstance(v, dict):
        for k, x in v.items():
            flat(prefix + "/" + k if prefix else k, x, acc)
    return acc

expected = flat("", obj, {})
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)

torch.save(obj, os.path.join(out, "new.pth"))
torch.save(obj, os.path.join(out, "proto4.pth"), pickle_protocol=4)
torch.save(obj, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)
torch.save({"w": torch.arange(3.0), "blob": "x" * 3000000}, os.path.join(out, "legacy_big.pth"),
           _use_new_zipfile_serialization=False)
torch.save(sd, os.path.join(out, "pytorch_model.bin"))
torch.save({"state_dict": sd, "epoch": 7, "optimizer": {"lr": 0.1}}, os.path.join(out, "wrapped.ckpt"))
torch.save({"a": {"w": torch.ones(1)}, "b": {"w": torch.zeros(1)}}, os.path.join(out, "ambiguous.pth"))

# the same archive re-zipped with DEFLATE
with zipfile.ZipFile(os.path.join(out, "new.pth")) as src, \
     zipfile.ZipFile(os.path.join(out, "deflated.pth"), "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        dst.writestr(info.filename, src.read(info.filename))

# ... and with every zip64 structure forced (sizes, offsets, entry count, end records)
zipfile.ZIP64_LIMIT = 0
zipfile.ZIP_FILECOUNT_LIMIT = 0
with zipfile.ZipFile(os.path.join(out, "new.pth")) as src, \
     zipfile.ZipFile(os.path.join(out, "zip64.pth"), "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        with dst.open(info.filename, "w", force_zip64=True) as w:
            w.write(src.read(info.filename))
zipfile.ZIP64_LIMIT = (1 << 31) - 1
zipfile.ZIP_FILECOUNT_LIMIT = (1 << 16) - 1

# a big-endian archive: byteorder record plus byte-swapped storage
torch.save({"x": torch.arange(-3, 3, dtype=torch.int32)}, os.path.join(out, "le.pth"))
with zipfile.ZipFile(os.path.join(out, "le.pth")) as src, \
     zipfile.ZipFile(os.path.join(out, "be.pth"), "w") as dst:
    for info in src.infolist():
        data = src.read(info.filename)
        if info.filename.endswith("/data/0"):
            data = b"".join(data[i:i + 4][::-1] for i in range(0, len(data), 4))
        dst.writestr(info.filename, data)
    dst.writestr(info.filename.split("/")[0] + "/byteorder", b"big")

# _rebuild_from_type_v2 wrapping _rebuild_tensor_v2 (how torch writes tensor subclasses / tensors with state)
class FromType:
    def __init__(self, t, new_type):
        self.t, self.new_type = t, new_type
    def __reduce_ex__(self, proto):
        t = self.t
        args = (t.storage(), t.storage_offset(), tuple(t.size()), t.stride(), False, collections.OrderedDict())
        return (torch._tensor._rebuild_from_type_v2, (torch._utils._rebuild_tensor_v2, self.new_type, args, None))
ft = torch.arange(6.0).reshape(2, 3).t()
torch.save({"p": FromType(ft, torch.nn.Parameter), "t": FromType(ft, torch.Tensor)}, os.path.join(out, "from_type.pth"))
torch.save({"x": FromType(ft, collections.OrderedDict)}, os.path.join(out, "from_type_bad.pth"))
with zipfile.ZipFile(os.path.join(out, "proto_attr.pth"), "w") as z:
    z.writestr("archive/data.pkl", b"\x80\x02ctorch\nconstructor\n.")

# malicious files: unpickling them with pickle would run a shell command
marker = sys.argv[2]
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + marker,))
evil = {"w": torch.ones(2), "evil": Evil()}
torch.save(evil, os.path.join(out, "evil.pth"))
torch.save(evil, os.path.join(out, "evil4.pth"), pickle_protocol=4)
torch.save(evil, os.path.join(out, "evil_legacy.pth"), _use_new_zipfile_serialization=False)
raw = b"cbuiltins\neval\n(V__import__('os').system('touch " + marker.encode() + b"')\ntR."
with zipfile.ZipFile(os.path.join(out, "eval.pth"), "w") as z:
    z.writestr("archive/data.pkl", raw)
    z.writestr("archive/version", b"3\n")
with open(os.path.join(out, "eval.pkl"), "wb") as f:
    f.write(raw)
print("ok")
`;

describe("torch.save checkpoints", { skip: SKIP_TORCH }, () => {
  let dir = "";
  let marker = "";
  let expected: Record<string, { dtype: string; shape: number[]; hex: string }> = {};

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "vlpkit-pth-"));
    marker = join(dir, "pwned");
    assert.equal(python(GENERATE, dir, marker).trim(), "ok");
    expected = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function flatten(prefix: string, v: unknown, acc: Map<string, RawTensor>): Map<string, RawTensor> {
    if (isRawTensor(v)) acc.set(prefix, v);
    else if (v instanceof Map) for (const [k, x] of v) flatten(prefix ? `${prefix}/${String(k)}` : String(k), x, acc);
    return acc;
  }

  function checkAll(file: string) {
    const root = loadPth(join(dir, file));
    const got = flatten("", root, new Map());
    assert.deepEqual([...got.keys()].sort(), Object.keys(expected).sort(), `${file}: tensor names`);
    for (const [name, want] of Object.entries(expected)) {
      const t = got.get(name)!;
      assert.equal(t.dtype, want.dtype, `${file}: ${name} dtype`);
      assert.deepEqual(t.shape, want.shape, `${file}: ${name} shape`);
      assert.equal(hex(t.data), want.hex, `${file}: ${name} bytes`);
    }
    return root as Map<string, unknown>;
  }

  test("zip format (pickle protocol 2) loads every tensor with identical bytes", () => {
    const root = checkAll("new.pth");
    const nested = root.get("nested") as Map<string, unknown>;
    assert.equal(nested.get("epoch"), 3);
    assert.equal(nested.get("lr"), 0.5);
    assert.equal(nested.get("name"), "run");
    assert.deepEqual(nested.get("list"), [1, 2.5, null, true]);
    assert.ok(isTuple(nested.get("tuple")));
    assert.deepEqual([...(nested.get("tuple") as unknown[])], [1, "a"]);
    // the model state_dict keeps its order and its _metadata attribute
    const model = root.get("model") as Map<string, RawTensor>;
    assert.deepEqual([...model.keys()], [
      "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked", "2.weight",
    ]);
    assert.equal(model.get("1.num_batches_tracked")!.dtype, "int64");
    assert.deepEqual(model.get("1.num_batches_tracked")!.shape, []);
    const state = getPyState(model);
    assert.ok(state instanceof Map && (state as Map<string, unknown>).has("_metadata"));
  });

  test("pickle protocol 4 (FRAME, STACK_GLOBAL, MEMOIZE, SHORT_BINUNICODE)", () => {
    checkAll("proto4.pth");
  });

  test("legacy non-zip format (_use_new_zipfile_serialization=False)", () => {
    checkAll("legacy.pth");
  });

  test("legacy files whose pickle is larger than the first read", () => {
    const v = loadPth(join(dir, "legacy_big.pth")) as Map<string, unknown>;
    assert.equal((v.get("blob") as string).length, 3_000_000);
    assert.deepEqual([...new Float32Array((v.get("w") as RawTensor).data.slice().buffer)], [0, 1, 2]);
  });

  test("DEFLATE-compressed and zip64 archives", () => {
    checkAll("deflated.pth");
    const zip64 = readFileSync(join(dir, "zip64.pth"));
    assert.ok(zip64.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06])), "fixture has a zip64 end record");
    assert.ok(zip64.includes(Buffer.from([0x50, 0x4b, 0x06, 0x07])), "fixture has a zip64 locator");
    checkAll("zip64.pth");
    const z = new ZipReader(join(dir, "zip64.pth"));
    try {
      assert.ok([...z.entries.keys()].some((n) => n.endsWith("/data.pkl")));
    } finally {
      z.close();
    }
  });

  test("big-endian archives (byteorder record) are byte-swapped", () => {
    for (const f of ["le.pth", "be.pth"]) {
      const t = (loadPth(join(dir, f)) as Map<string, RawTensor>).get("x")!;
      assert.deepEqual([...new Int32Array(t.data.slice().buffer)], [-3, -2, -1, 0, 1, 2], f);
    }
  });

  test("loadPthStateDict finds the flat state_dict", () => {
    const want = Object.entries(expected).filter(([k]) => k.startsWith("model/"));
    const check = (sd: Map<string, RawTensor>, what: string) => {
      assert.deepEqual([...sd.keys()], want.map(([k]) => k.slice("model/".length)), what);
      for (const [k, w] of want) assert.equal(hex(sd.get(k.slice("model/".length))!.data), w.hex, `${what}: ${k}`);
    };
    check(loadPthStateDict(join(dir, "pytorch_model.bin")), "bare state_dict");
    check(loadPthStateDict(join(dir, "wrapped.ckpt")), "{state_dict: ...}");
    check(loadPthStateDict(join(dir, "new.pth"), { key: "model" }), "key: model");
    check(loadPthStateDict(join(dir, "legacy.pth"), { key: ["model"] }), "key path");
    assert.deepEqual([...loadPthStateDict(join(dir, "new.pth"), { key: ["nested", "inner"] }).keys()], ["t"]);
    assert.throws(() => loadPthStateDict(join(dir, "ambiguous.pth")), /ambiguous\.pth: cannot find a state_dict.*"a", "b".*pass \{key/);
    assert.throws(() => loadPthStateDict(join(dir, "new.pth"), { key: "nope" }), /new\.pth: no key "nope" in the top-level dict/);
    assert.throws(() => loadPthStateDict(join(dir, "new.pth"), { key: "nested" }), /\["nested"\]\["inner"\] is a dict, not a tensor/);
  });

  test("_rebuild_from_type_v2 is accepted only around tensor rebuilding with tensor types", () => {
    const v = loadPth(join(dir, "from_type.pth")) as Map<string, RawTensor>;
    for (const k of ["p", "t"]) {
      const t = v.get(k)!;
      assert.deepEqual(t.shape, [3, 2], k);
      assert.deepEqual([...new Float32Array(t.data.slice().buffer)], [0, 3, 1, 4, 2, 5], k);
    }
    assert.throws(
      () => loadPth(join(dir, "from_type_bad.pth")),
      /from_type_bad\.pth: torch\._tensor\._rebuild_from_type_v2: tensor subclass global collections\.OrderedDict is not supported/,
    );
    // names that exist on Object.prototype are not storage types
    assert.throws(() => loadPth(join(dir, "proto_attr.pth")), /refusing to load global "torch\.constructor"/);
  });

  test("malicious pickles are refused and nothing runs", () => {
    for (const f of ["evil.pth", "evil4.pth", "evil_legacy.pth"]) {
      const path = join(dir, f);
      assert.throws(
        () => loadPth(path),
        (e: Error) => e.message === `${path}: refusing to load global "posix.system" (only tensor-rebuilding globals are allowed)`,
        f,
      );
      assert.throws(() => loadPthStateDict(path), /refusing to load global "posix\.system"/, f);
    }
    const evalPath = join(dir, "eval.pth");
    assert.throws(() => loadPth(evalPath), (e: Error) => e.message.startsWith(`${evalPath}: refusing to load global "builtins.eval"`));
    assert.throws(
      () => unpickle(readFileSync(join(dir, "eval.pkl")), { source: "eval.pkl", findGlobal: findBuiltinGlobal }),
      /eval\.pkl: refusing to load global "builtins\.eval"/,
    );
    assert.equal(existsSync(marker), false, "the payload must never run");
  });

  test("opaqueGlobals records unknown globals without running them", () => {
    const root = loadPth(join(dir, "evil.pth"), { opaqueGlobals: true }) as Map<string, unknown>;
    const evil = root.get("evil");
    assert.ok(evil instanceof PyOpaque);
    assert.equal(`${evil.module}.${evil.name}`, "posix.system");
    assert.deepEqual([...evil.args], [`touch ${marker}`]);
    assert.ok(isRawTensor(root.get("w")));
    assert.equal(existsSync(marker), false);
  });

  test("corrupt checkpoints are rejected with clear errors", () => {
    const good = readFileSync(join(dir, "new.pth"));
    const cut = join(dir, "cut.pth");
    writeFileSync(cut, good.subarray(0, Math.floor(good.length / 2)));
    assert.throws(() => loadPth(cut), /cut\.pth: zip end-of-central-directory record not found/);

    // flip one byte inside the first storage's data: the CRC check catches it
    const z = new ZipReader(join(dir, "new.pth"));
    const entry = [...z.entries.values()].find((e) => e.name.endsWith("/data/0"))!;
    z.close();
    const bad = Buffer.from(good);
    const nameLen = bad.readUInt16LE(entry.localHeaderOffset + 26);
    const extraLen = bad.readUInt16LE(entry.localHeaderOffset + 28);
    bad[entry.localHeaderOffset + 30 + nameLen + extraLen] ^= 0xff;
    const crc = join(dir, "crc.pth");
    writeFileSync(crc, bad);
    assert.throws(() => loadPth(crc), /crc\.pth: zip entry ".*\/data\/0": CRC-32 mismatch/);

    const legacy = readFileSync(join(dir, "legacy.pth"));
    const cutLegacy = join(dir, "cut_legacy.pth");
    writeFileSync(cutLegacy, legacy.subarray(0, legacy.length - 10));
    assert.throws(() => loadPth(cutLegacy), /cut_legacy\.pth: truncated: storage "\d+" data/);
    writeFileSync(cutLegacy, legacy.subarray(0, 200));
    assert.throws(() => loadPth(cutLegacy), /cut_legacy\.pth: unexpected end of pickle data/);

    const text = join(dir, "text.pth");
    writeFileSync(text, "hello world, not a checkpoint\n");
    assert.throws(() => loadPth(text), /text\.pth: not a PyTorch checkpoint/);
    const empty = join(dir, "empty.pth");
    writeFileSync(empty, "");
    assert.throws(() => loadPth(empty), /empty\.pth: file is empty/);
  });
});

// ---------------------------------------------------------------------------
// The unpickler against Python's pickle, every protocol

const PICKLE_VALUES = String.raw`
import pickle, json, collections
shared = [1, "x"]
value = {
    "int": 1, "neg": -300, "i32": 2**31 - 1, "i32neg": -2**31, "u16": 65535, "big": 2**70, "negbig": -(2**70),
    "f": 1.5, "fneg": -0.1, "inf": float("inf"),
    "s": "h\u00e9llo \u2603 \U0001F600", "empty": "", "nl": "a\nb\\c'\"",
    "b": b"\x00\xff\n'ab", "ba": bytearray(b"xy"),
    "l": [1, [2, 3], []], "t0": (), "t1": (1,), "t2": (1, 2), "t3": (1, 2, 3), "t5": (1, 2, 3, 4, 5),
    "none": None, "bools": [True, False],
    "d": {1: "one", "x": {"y": []}}, "od": collections.OrderedDict([("b", 1), ("a", 2)]),
    "set": {7}, "fs": frozenset([8]),
    "a": shared, "b2": shared,
}
print(json.dumps({str(p): pickle.dumps(value, protocol=p).hex() for p in range(0, 6)}))
`;

describe("restricted unpickler", () => {
  test("decodes Python pickles of protocols 0-5", { skip: SKIP_PY }, () => {
    const dumps: Record<string, string> = JSON.parse(python(PICKLE_VALUES));
    assert.deepEqual(Object.keys(dumps), ["0", "1", "2", "3", "4", "5"]);
    for (const [proto, h] of Object.entries(dumps)) {
      const v = unpickle(Buffer.from(h, "hex"), { source: `protocol ${proto}`, findGlobal: findBuiltinGlobal }) as Map<string, unknown>;
      const at = `protocol ${proto}`;
      assert.ok(v instanceof Map, at);
      assert.equal(v.get("int"), 1, at);
      assert.equal(v.get("neg"), -300, at);
      assert.equal(v.get("i32"), 2 ** 31 - 1, at);
      assert.equal(v.get("i32neg"), -(2 ** 31), at);
      assert.equal(v.get("u16"), 65535, at);
      assert.equal(v.get("big"), 2n ** 70n, at);
      assert.equal(v.get("negbig"), -(2n ** 70n), at);
      assert.equal(v.get("f"), 1.5, at);
      assert.equal(v.get("fneg"), -0.1, at);
      assert.equal(v.get("inf"), Infinity, at);
      assert.equal(v.get("s"), "h\u00e9llo \u2603 \u{1F600}", at);
      assert.equal(v.get("empty"), "", at);
      assert.equal(v.get("nl"), "a\nb\\c'\"", at);
      assert.deepEqual(v.get("b"), new Uint8Array([0, 0xff, 0x0a, 0x27, 0x61, 0x62]), at);
      assert.deepEqual(v.get("ba"), new Uint8Array([0x78, 0x79]), at);
      assert.deepEqual(v.get("l"), [1, [2, 3], []], at);
      for (const [k, n] of [["t0", 0], ["t1", 1], ["t2", 2], ["t3", 3], ["t5", 5]] as const) {
        const t = v.get(k);
        assert.ok(isTuple(t), `${at}: ${k} is a tuple`);
        assert.deepEqual([...(t as unknown[])], Array.from({ length: n }, (_, i) => i + 1), `${at}: ${k}`);
      }
      assert.ok(!isTuple(v.get("l")), `${at}: lists are not tuples`);
      assert.equal(v.get("none"), null, at);
      assert.deepEqual(v.get("bools"), [true, false], at);
      assert.deepEqual(v.get("d"), new Map<unknown, unknown>([[1, "one"], ["x", new Map([["y", []]])]]), at);
      assert.deepEqual([...(v.get("od") as Map<string, number>)], [["b", 1], ["a", 2]], at);
      assert.deepEqual(v.get("set"), new Set([7]), at);
      assert.deepEqual(v.get("fs"), new Set([8]), at);
      assert.equal(v.get("a"), v.get("b2"), `${at}: shared references stay shared`);
    }
  });

  const bytes = (...parts: (string | number[])[]) =>
    Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : Buffer.from(p))));

  test("refuses globals outside the allow-list, for GLOBAL, STACK_GLOBAL and INST", () => {
    const opts = { source: "evil.pkl", findGlobal: findBuiltinGlobal };
    assert.throws(() => unpickle(bytes("cos\nsystem\n(Vtouch /tmp/x\ntR."), opts), (e: Error) =>
      e instanceof PickleError && e.message === 'evil.pkl: refusing to load global "os.system" (only allow-listed globals can be loaded)');
    // protocol 4: STACK_GLOBAL from two strings
    assert.throws(
      () => unpickle(bytes([0x80, 4, 0x8c, 10], "subprocess", [0x8c, 5], "Popen", [0x93, 0x29, 0x52, 0x2e]), opts),
      /evil\.pkl: refusing to load global "subprocess\.Popen"/,
    );
    assert.throws(() => unpickle(bytes("(ibuiltins\nexec\n."), opts), /refusing to load global "builtins\.exec"/);
    assert.throws(() => unpickle(bytes("cbuiltins\ngetattr\n."), { ...opts, refusalHint: "custom hint" }), /"builtins\.getattr" \(custom hint\)/);
    // torch-only rebuild helpers are not in the plain builtin list either
    assert.throws(() => unpickle(bytes("ctorch._utils\n_rebuild_tensor_v2\n."), opts), /refusing to load global "torch\._utils\._rebuild_tensor_v2"/);
  });

  test("malformed pickles fail with the opcode and byte position", () => {
    const opts = { source: "x.pkl", findGlobal: () => undefined };
    assert.throws(() => unpickle(bytes([0x80, 2, 0x4a, 1, 2]), opts), (e: Error) =>
      e instanceof PickleError && e.truncated && /x\.pkl: unexpected end of pickle data .*BININT at byte 2/.test(e.message));
    assert.throws(() => unpickle(bytes([0x80, 2, 0xff]), opts), /unknown opcode 0xff/);
    assert.throws(() => unpickle(bytes([0x80, 2, 0x68, 5, 0x2e]), opts), /memo entry 5 is missing .*BINGET/);
    assert.throws(() => unpickle(bytes([0x80, 2, 0x2e]), opts), /stack has 0 items at STOP/);
    assert.throws(() => unpickle(bytes([0x80, 2, 0x4e, 0x2e, 0x4e]), opts), /1 trailing bytes after the pickle STOP/);
    assert.throws(() => unpickle(bytes([0x80, 2, 0x4e, 0x51, 0x2e]), opts), /persistent id in a pickle that does not allow them/);
    assert.throws(() => unpickle(bytes([0x80, 2, 0x82, 1, 0x2e]), opts), /extension registry/);
    assert.throws(() => unpickle(bytes([0x80, 9, 0x4e, 0x2e]), opts), /unsupported pickle protocol 9/);
  });

  test("unpickleAt reads consecutive pickles", () => {
    const data = bytes([0x80, 2, 0x4b, 7, 0x2e, 0x80, 2, 0x8a, 2, 0x00, 0x80, 0x2e]);
    const a = unpickleAt(data, 0, { findGlobal: () => undefined });
    assert.deepEqual(a, { value: 7, end: 5 });
    const b = unpickleAt(data, a.end, { findGlobal: () => undefined });
    assert.deepEqual(b, { value: -32768, end: data.length });
  });
});

describe("strided gather", () => {
  test("matches a naive index computation for assorted strides and element sizes", () => {
    for (const es of [1, 2, 4, 8]) {
      const storage = new Uint8Array(200 * es);
      for (let i = 0; i < storage.length; i++) storage[i] = (i * 7 + 3) & 0xff;
      const cases: [number, number[], number[]][] = [
        [0, [3, 4], [4, 1]],
        [5, [4, 3], [1, 4]],
        [2, [2, 3, 4], [1, 2, 6]],
        [1, [3, 4], [0, 1]],
        [7, [], []],
        [0, [0, 5], [5, 1]],
        [3, [5], [9]],
      ];
      for (const [offset, size, stride] of cases) {
        const got = gatherStrided(storage, es, offset, size, stride);
        const n = size.reduce((a, b) => a * b, 1);
        const want = new Uint8Array(n * es);
        for (let i = 0; i < n; i++) {
          let rem = i;
          let src = offset;
          for (let d = size.length - 1; d >= 0; d--) {
            src += (rem % size[d]) * stride[d];
            rem = Math.floor(rem / size[d]);
          }
          want.set(storage.subarray(src * es, src * es + es), i * es);
        }
        assert.deepEqual(got, want, `es=${es} offset=${offset} size=[${size}] stride=[${stride}]`);
      }
    }
  });
});

describe("hostile checkpoints stay bounded", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "pth-hostile-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const growth = (f: () => void): number => {
    const r0 = process.memoryUsage().rss;
    f();
    return process.memoryUsage().rss - r0;
  };

  test("a small file claiming a 1 GiB expanded tensor is refused before anything is copied", () => {
    // one float32 element, viewed with stride 0 as 2^28 elements (torch keeps expanded views' strides)
    const path = join(dir, "expand.pth");
    writeFileSync(path, pthZip([{ name: "w", storageNumel: 1, size: [1 << 28], stride: [0] }], new Uint8Array(4)));
    assert.ok(readFileSync(path).length < 1000);
    const grew = growth(() => assert.throws(() => loadPth(path), /expand\.pth: tensor of size \[268435456\] stride \[0\] on storage "0" would bring/));
    assert.ok(grew < 200e6, `rss grew ${grew} bytes`);
    // the same view at a legitimate size still loads
    writeFileSync(path, pthZip([{ name: "w", storageNumel: 1, size: [1, 512], stride: [0, 0] }], new Uint8Array(new Float32Array([7]).buffer)));
    const t = (loadPth(path) as Map<string, RawTensor>).get("w")!;
    assert.deepEqual(new Float32Array(t.data.slice().buffer), new Float32Array(512).fill(7));
  });

  test("a DEFLATEd entry may not expand more than 100x (zip bomb)", () => {
    const zeros = new Uint8Array(64 << 20);
    const path = join(dir, "bomb.pth");
    writeFileSync(path, pthZip([{ name: "w", storageNumel: zeros.length / 4, size: [zeros.length / 4], stride: [1] }], zeros, { deflate: true }));
    assert.ok(readFileSync(path).length < 200_000);
    const grew = growth(() => assert.throws(() => loadPth(path), /bomb\.pth: zip entry "archive\/data\/0": \d+ compressed bytes claim 67108864, more than 100x/));
    assert.ok(grew < 32e6, `rss grew ${grew} bytes`);
    // ordinary float data inflates fine
    const noise = new Float32Array(1000).map((_, i) => Math.sin(i));
    writeFileSync(path, pthZip([{ name: "w", storageNumel: 1000, size: [1000], stride: [1] }], new Uint8Array(noise.buffer), { deflate: true }));
    assert.deepEqual(new Float32Array((loadPth(path) as Map<string, RawTensor>).get("w")!.data.slice().buffer), noise);
  });
});
