import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  MAX_HEADER_SIZE,
  decodeSafetensors,
  encodeSafetensors,
  openSafetensors,
  readSafetensors,
  writeSafetensors,
} from "../src/engine/serialize/safetensors.ts";
import { DTYPES, type DType, type RawTensor, byteLength, elementSize } from "../src/engine/serialize/raw.ts";

const PYTHON = "/usr/bin/python3";
const torchCheck = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
const SKIP_TORCH = torchCheck.status === 0 ? false : `${PYTHON} cannot import torch; skipping Python cross-checks`;

let dir = "";
before(() => {
  dir = mkdtempSync(join(tmpdir(), "vlpkit-st-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function randomTensor(dtype: DType, shape: number[], seed: number): RawTensor {
  const data = new Uint8Array(byteLength(dtype, shape));
  let x = seed * 2654435761;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    data[i] = x >>> 24;
  }
  if (dtype === "bool") for (let i = 0; i < data.length; i++) data[i] &= 1;
  return { dtype, shape, data };
}

function headerOf(bytes: Uint8Array): { n: number; text: string; json: Record<string, any> } {
  const n = Number(Buffer.from(bytes).readBigUInt64LE(0));
  const text = Buffer.from(bytes.subarray(8, 8 + n)).toString("utf8");
  return { n, text, json: JSON.parse(text) };
}

/** A file with a hand-written header (for corruption tests). */
function craft(name: string, header: string | object, data: Uint8Array | number = 0, pad = true): string {
  let text = typeof header === "string" ? header : JSON.stringify(header);
  if (pad) while ((8 + Buffer.byteLength(text)) % 8 !== 0) text += " ";
  const h = Buffer.from(text, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const body = typeof data === "number" ? new Uint8Array(data) : data;
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([len, h, body]));
  return path;
}

describe("safetensors round trip", () => {
  test("every dtype, scalars and empty tensors, with metadata", () => {
    const tensors = new Map<string, RawTensor>();
    DTYPES.forEach((dtype, i) => {
      tensors.set(`${dtype}.matrix`, randomTensor(dtype, [3, 5], i + 1));
      tensors.set(`${dtype}.scalar`, randomTensor(dtype, [], i + 100));
      tensors.set(`${dtype}.empty`, randomTensor(dtype, [0, 4], i + 200));
    });
    tensors.set("odd/u8", randomTensor("uint8", [3], 999)); // forces padding questions for the following tensors
    const metadata = { format: "pt", note: "quotes \" and \u00e9", "__proto__": "not a prototype" };
    const path = join(dir, "all.safetensors");
    writeSafetensors(path, tensors, metadata);

    const back = readSafetensors(path);
    assert.deepEqual([...back.tensors.keys()], [...tensors.keys()].sort());
    for (const [name, t] of tensors) {
      const got = back.tensors.get(name)!;
      assert.equal(got.dtype, t.dtype, name);
      assert.deepEqual(got.shape, t.shape, name);
      assert.deepEqual(got.data, t.data, name);
    }
    assert.deepEqual(Object.entries(back.metadata), Object.entries(metadata));

    // layout: 8-byte aligned header, __metadata__ first, names sorted, data naturally aligned and contiguous
    const bytes = readFileSync(path);
    const { n, text, json } = headerOf(bytes);
    assert.equal((8 + n) % 8, 0);
    assert.match(text, /^\{"__metadata__":\{/);
    assert.ok(/^ *$/.test(text.slice(text.lastIndexOf("}") + 1)), "header is padded with spaces");
    const names = Object.keys(json).filter((k) => k !== "__metadata__");
    assert.deepEqual(names, [...names].sort());
    let total = 0;
    for (const name of names) {
      const [b, e] = json[name].data_offsets;
      assert.equal(b % elementSize(tensors.get(name)!.dtype), 0, `${name} is aligned`);
      total += e - b;
    }
    assert.equal(bytes.length, 8 + n + total);

    // the in-memory codec produces the same bytes
    assert.deepEqual(encodeSafetensors(tensors, metadata), new Uint8Array(bytes));
    const decoded = decodeSafetensors(bytes);
    assert.deepEqual(decoded.tensors.get("float64.matrix")!.data, tensors.get("float64.matrix")!.data);
  });

  test("plain-object input and no metadata", () => {
    const path = join(dir, "obj.safetensors");
    const t = randomTensor("float32", [2, 2], 5);
    writeSafetensors(path, { "10": t, "9": t, b: t, a: t });
    const { json } = headerOf(readFileSync(path));
    assert.equal(json.__metadata__, undefined);
    assert.deepEqual(Object.keys(json).sort(), ["10", "9", "a", "b"].sort());
    const back = readSafetensors(path);
    assert.deepEqual([...back.tensors.keys()], ["10", "9", "a", "b"]); // header (byte-sorted) order, not JS integer-key order
    assert.deepEqual(back.metadata, {});
  });

  test("lazy reader reads tensors on demand", () => {
    const path = join(dir, "lazy.safetensors");
    const a = randomTensor("bfloat16", [4, 3], 1);
    const b = randomTensor("int64", [2], 2);
    writeSafetensors(path, { a, b }, { k: "v" });
    const f = openSafetensors(path);
    try {
      assert.deepEqual(f.names(), ["a", "b"]);
      assert.equal(f.size, 2);
      assert.deepEqual(f.metadata, { k: "v" });
      const info = f.info("a");
      assert.equal(info.dtype, "bfloat16");
      assert.deepEqual(info.shape, [4, 3]);
      assert.equal(info.byteLength, 24);
      assert.deepEqual(f.read("b"), b);
      assert.deepEqual(f.read("a"), a);
      assert.throws(() => f.read("c"), /lazy\.safetensors: no tensor named "c"/);
    } finally {
      f.close();
    }
    assert.throws(() => f.read("a"), /lazy\.safetensors: file is closed/);
  });

  test("writer validates its input and leaves an existing file untouched", () => {
    const path = join(dir, "keep.safetensors");
    writeFileSync(path, "old");
    assert.throws(
      () => writeSafetensors(path, { w: { dtype: "float32", shape: [2, 3], data: new Uint8Array(20) } }),
      /keep\.safetensors: tensor "w": float32 tensor of shape \[2, 3\] needs 24 bytes but data has 20/,
    );
    assert.throws(() => writeSafetensors(path, { __metadata__: randomTensor("uint8", [1], 1) }), /"__metadata__" cannot be used as a tensor name/);
    assert.throws(
      () => writeSafetensors(path, { w: randomTensor("uint8", [1], 1) }, { n: 3 as unknown as string }),
      /metadata value for "n" must be a string/,
    );
    assert.equal(readFileSync(path, "utf8"), "old");
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes("keep.safetensors")), ["keep.safetensors"]);
  });
});

describe("safetensors validation", () => {
  const f32 = (n: number) => ({ dtype: "F32", shape: [n], data_offsets: [0, 4 * n] });

  test("well-formed hand-made file parses (spaces in JSON, unpadded header)", () => {
    const path = craft("ok.safetensors", '{ "x" : { "dtype" : "F32", "shape" : [ 2 ], "data_offsets" : [ 0, 8 ] } }', 8, false);
    const { tensors } = readSafetensors(path);
    assert.deepEqual(tensors.get("x")!.shape, [2]);
  });

  const cases: [string, () => string, RegExp][] = [
    ["too short", () => { const p = join(dir, "short.safetensors"); writeFileSync(p, Buffer.alloc(5)); return p; },
      /short\.safetensors: file is 5 bytes, too short for the 8-byte header length/],
    ["header longer than the file", () => {
      const p = craft("trunc-header.safetensors", { x: f32(1) }, 4);
      const b = readFileSync(p);
      writeFileSync(p, b.subarray(0, 20));
      return p;
    }, /trunc-header\.safetensors: truncated: header length is \d+ bytes but the file has only 12/],
    ["truncated data", () => {
      const p = craft("trunc-data.safetensors", { x: f32(4) }, 16);
      const b = readFileSync(p);
      writeFileSync(p, b.subarray(0, b.length - 3));
      return p;
    }, /trunc-data\.safetensors: truncated: tensors need a 16-byte data buffer but only 13 bytes/],
    ["huge header length", () => {
      const p = join(dir, "huge.safetensors");
      const b = Buffer.alloc(64);
      b.writeBigUInt64LE(BigInt(MAX_HEADER_SIZE + 1));
      writeFileSync(p, b);
      return p;
    }, /huge\.safetensors: header length 100000001 exceeds the 100000000-byte limit/],
    ["bad JSON", () => craft("badjson.safetensors", '{"x": {"dtype": "F32",, }}'), /badjson\.safetensors: bad header JSON: .* at character \d+/],
    ["not an object", () => craft("arr.safetensors", "[1, 2]"), /arr\.safetensors: header does not start with '\{'/],
    ["invalid UTF-8", () => {
      const p = craft("utf8.safetensors", '{"x\u00ff": 1}');
      const b = readFileSync(p);
      b[b.indexOf(0xc3)] = 0xff;
      writeFileSync(p, b);
      return p;
    }, /utf8\.safetensors: header is not valid UTF-8/],
    ["overlapping offsets", () => craft("overlap.safetensors", {
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }, 12), /overlap\.safetensors: tensor "b" data_offsets \[4, 12\] overlap tensor "a"/],
    ["gap between tensors", () => craft("gap.safetensors", {
      a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
      b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
    }, 12), /gap\.safetensors: gap in the data buffer: bytes 4\.\.8 before tensor "b"/],
    ["trailing bytes", () => craft("trailing.safetensors", { a: f32(1) }, 9), /trailing\.safetensors: 5 unexpected trailing bytes/],
    ["shape does not match byte length", () => craft("shape.safetensors", {
      a: { dtype: "F32", shape: [3], data_offsets: [0, 8] },
    }, 8), /shape\.safetensors: tensor "a": F32 shape \[3\] needs 12 bytes but data_offsets \[0, 8\] span 8/],
    ["duplicate names", () => craft("dup.safetensors",
      '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', 2),
    /dup\.safetensors: bad header JSON: duplicate key "a"/],
    ["unknown dtype", () => craft("dtype.safetensors", { a: { dtype: "F128", shape: [1], data_offsets: [0, 16] } }, 16),
      /dtype\.safetensors: tensor "a": unknown dtype "F128"/],
    ["dtype named like an Object.prototype member", () => craft("ctor.safetensors", { a: { dtype: "constructor", shape: [1], data_offsets: [0, 1] } }, 1),
      /ctor\.safetensors: tensor "a": unknown dtype "constructor"/],
    ["unsupported dtype", () => craft("u32.safetensors", { a: { dtype: "U32", shape: [1], data_offsets: [0, 4] } }, 4),
      /u32\.safetensors: tensor "a": dtype U32 is not supported/],
    ["negative shape", () => craft("neg.safetensors", { a: { dtype: "U8", shape: [-1], data_offsets: [0, 0] } }),
      /neg\.safetensors: tensor "a": "shape" must be an array of non-negative integers/],
    ["offsets reversed", () => craft("rev.safetensors", { a: { dtype: "U8", shape: [0], data_offsets: [4, 0] } }, 4),
      /rev\.safetensors: tensor "a": data_offsets \[4, 0\] end before they begin/],
    ["metadata value not a string", () => craft("meta.safetensors", { __metadata__: { epoch: 3 } }),
      /meta\.safetensors: "__metadata__" value for "epoch" is not a string/],
  ];
  for (const [name, make, err] of cases) {
    test(`rejects: ${name}`, () => {
      const path = make();
      assert.throws(() => readSafetensors(path), err);
      assert.throws(() => openSafetensors(path), err);
    });
  }
});

// ---------------------------------------------------------------------------
// Cross-checks with an independent Python implementation of the layout

const PY_WRITE = String.raw`
import sys, json, struct, torch
out = sys.argv[1]
torch.manual_seed(1)
ts = {
    "z.f32": torch.randn(2, 3),
    "y.f64": torch.randn(3, dtype=torch.float64),
    "x.f16": torch.randn(5).half(),
    "w.bf16": torch.randn(2, 2).bfloat16(),
    "v.i64": torch.tensor([-(2**62), 5, 2**40]),
    "u.i32": torch.tensor([-7, 0, 2**31 - 1], dtype=torch.int32),
    "t.i16": torch.tensor([-300, 300], dtype=torch.int16),
    "s.i8": torch.tensor([-128, 127, 3], dtype=torch.int8),
    "r.u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
    "q.bool": torch.tensor([[True, False], [False, True]]),
    "p.scalar": torch.tensor(2.5),
    "o.empty": torch.zeros(0, 2),
}
names = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
         torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
header, data, expected = {"__metadata__": {"source": "python"}}, b"", {}
for name, t in ts.items():  # insertion order: not sorted, not aligned
    raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(raw)]}
    expected[name] = {"shape": list(t.shape), "hex": raw.hex()}
    data += raw
h = json.dumps(header).encode()  # default separators: spaces after ',' and ':'
h += b" " * ((8 - len(h) % 8) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
print(json.dumps(expected))
`;

const PY_CHECK = String.raw`
import sys, json, struct, torch
path, spec = sys.argv[1], json.loads(sys.argv[2])
with open(path, "rb") as f:
    buf = f.read()
(n,) = struct.unpack("<Q", buf[:8])
assert (8 + n) % 8 == 0, "header not padded to 8 bytes"
header = json.loads(buf[8:8 + n].decode("utf-8"))
data = buf[8 + n:]
assert header.pop("__metadata__") == {"framework": "vlpkit"}
assert set(header) == set(spec), (sorted(header), sorted(spec))
dtypes = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
          "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
pos = 0
for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
    b, e = info["data_offsets"]
    assert b == pos, f"{name}: not contiguous"
    pos = e
    dtype = dtypes[info["dtype"]]
    want = spec[name]
    assert info["dtype"] == want["st"], (name, info["dtype"])
    assert info["shape"] == want["shape"], (name, info["shape"])
    if e > b:
        got = torch.frombuffer(bytearray(data[b:e]), dtype=dtype).reshape(info["shape"])
    else:
        got = torch.zeros(info["shape"], dtype=dtype)
    ref = torch.tensor([int(v) if isinstance(v, str) else v for v in want["values"]], dtype=dtype).reshape(want["shape"])
    assert torch.equal(got, ref), (name, got, ref)
assert pos == len(data), "trailing bytes"
print("ok", len(header))
`;

function encode(dtype: DType, values: number[] | bigint[] | boolean[]): Uint8Array {
  switch (dtype) {
    case "float32": return new Uint8Array(new Float32Array(values as number[]).buffer);
    case "float64": return new Uint8Array(new Float64Array(values as number[]).buffer);
    case "int64": return new Uint8Array(new BigInt64Array(values as bigint[]).buffer);
    case "int32": return new Uint8Array(new Int32Array(values as number[]).buffer);
    case "int16": return new Uint8Array(new Int16Array(values as number[]).buffer);
    case "int8": return new Uint8Array(new Int8Array(values as number[]).buffer);
    case "uint8": return new Uint8Array(values as number[]);
    case "bool": return new Uint8Array((values as boolean[]).map(Number));
    case "bfloat16": {
      // exactly representable values: the top half of the float32 bits
      const f = new Uint32Array(new Float32Array(values as number[]).buffer);
      return new Uint8Array(new Uint16Array([...f].map((x) => x >>> 16)).buffer);
    }
    case "float16": {
      const bits: Record<number, number> = { 1: 0x3c00, [-2]: 0xc000, 0.5: 0x3800, 65504: 0x7bff, 0: 0 };
      return new Uint8Array(new Uint16Array((values as number[]).map((v) => bits[v])).buffer);
    }
  }
}

describe("safetensors against an independent Python implementation", { skip: SKIP_TORCH }, () => {
  test("reads a file laid out by Python struct/json", () => {
    const path = join(dir, "py.safetensors");
    const expected: Record<string, { shape: number[]; hex: string }> = JSON.parse(
      execFileSync(PYTHON, ["-c", PY_WRITE, path], { encoding: "utf8" }),
    );
    const { tensors, metadata } = readSafetensors(path);
    assert.deepEqual(metadata, { source: "python" });
    assert.deepEqual([...tensors.keys()], Object.keys(expected));
    for (const [name, want] of Object.entries(expected)) {
      const t = tensors.get(name)!;
      assert.deepEqual(t.shape, want.shape, name);
      assert.equal(Buffer.from(t.data).toString("hex"), want.hex, name);
    }
    assert.equal(tensors.get("w.bf16")!.dtype, "bfloat16");
    assert.equal(tensors.get("q.bool")!.dtype, "bool");
  });

  test("Python parses our file and checks the values with torch.frombuffer", () => {
    const values: [string, DType, string, number[], number[] | bigint[] | boolean[]][] = [
      ["w.f32", "float32", "F32", [2, 2], [1.5, -2, 0.25, 1e10]],
      ["w.f64", "float64", "F64", [3], [Math.PI, -1e-300, 7]],
      ["h.f16", "float16", "F16", [5], [1, -2, 0.5, 65504, 0]],
      ["h.bf16", "bfloat16", "BF16", [2, 2], [1, -2, 0.5, 3.5]],
      ["i.i64", "int64", "I64", [3], [-(2n ** 62n), 5n, 2n ** 40n]],
      ["i.i32", "int32", "I32", [1, 3], [-7, 0, 2 ** 31 - 1]],
      ["i.i16", "int16", "I16", [2], [-300, 300]],
      ["i.i8", "int8", "I8", [3], [-128, 127, 3]],
      ["u8", "uint8", "U8", [3], [0, 255, 7]],
      ["mask", "bool", "BOOL", [2, 2], [true, false, false, true]],
      ["scalar", "float32", "F32", [], [2.5]],
      ["empty", "int64", "I64", [0, 3], []],
    ];
    const tensors = new Map<string, RawTensor>();
    const spec: Record<string, { st: string; shape: number[]; values: unknown[] }> = {};
    for (const [name, dtype, st, shape, vals] of values) {
      tensors.set(name, { dtype, shape, data: encode(dtype, vals) });
      // int64 goes through JSON as decimal strings (exact beyond 2^53)
      spec[name] = { st, shape, values: (vals as unknown[]).map((v) => (typeof v === "bigint" ? v.toString() : v)) };
    }
    const path = join(dir, "ours.safetensors");
    writeSafetensors(path, tensors, { framework: "vlpkit" });
    const out = execFileSync(PYTHON, ["-c", PY_CHECK, path, JSON.stringify(spec)], { encoding: "utf8" });
    assert.equal(out.trim(), `ok ${values.length}`);
  });
});
