/**
 * A restricted unpickler (pickle protocols 0-5) that never executes anything
 * from the file. Python objects become plain JavaScript values:
 *
 *   None -> null, bool -> boolean, int -> number (bigint beyond 2^53),
 *   float -> number, str -> string, bytes/bytearray -> Uint8Array,
 *   list -> array, tuple -> frozen array (see isTuple), dict -> Map,
 *   set/frozenset -> Set.
 *
 * A GLOBAL / STACK_GLOBAL / INST opcode names a Python object by module and
 * name. It is looked up with the caller's `findGlobal`; only what that
 * returns can be referenced, and "calling" it (REDUCE, NEWOBJ, OBJ, INST)
 * runs the caller's JavaScript implementation, never Python. Anything the
 * caller does not know is refused with an error naming the global, unless
 * `opaqueGlobals` is set, in which case it becomes an inert PyOpaque record.
 */

export interface GlobalImpl {
  /** Called for REDUCE, NEWOBJ, NEWOBJ_EX, OBJ and INST; absent means the global cannot be called. */
  call?: (args: readonly unknown[]) => unknown;
}

/** A resolved global, as it sits on the unpickler stack. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly impl: GlobalImpl,
    readonly opaque = false,
  ) {}

  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/**
 * An object of a class the caller did not allow-list, recorded but not built
 * (only with `opaqueGlobals`).
 */
export class PyOpaque {
  /** State from BUILD (a __setstate__ argument), if any. */
  state: unknown = undefined;
  /** Items appended by APPEND(S) (list subclasses). */
  readonly listItems: unknown[] = [];
  /** Items set by SETITEM(S) (dict subclasses). */
  readonly dictItems = new Map<unknown, unknown>();

  constructor(
    readonly module: string,
    readonly name: string,
    readonly args: readonly unknown[],
  ) {}
}

export class PickleError extends Error {
  /** True when the data ended before STOP (more bytes might complete it). */
  readonly truncated: boolean;

  constructor(message: string, truncated = false) {
    super(message);
    this.name = "PickleError";
    this.truncated = truncated;
  }
}

export interface UnpickleOptions {
  /** Name used in error messages (usually the file). */
  source?: string;
  /** Resolves module.name to an implementation; undefined = not allowed. */
  findGlobal: (module: string, name: string) => GlobalImpl | undefined;
  /** Explains refusals: `refusing to load global "m.n" (<hint>)`. */
  refusalHint?: string;
  /** Handles BINPERSID / PERSID; without it persistent ids are an error. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Turn globals that findGlobal refuses into inert PyOpaque records instead of failing. */
  opaqueGlobals?: boolean;
}

const pyAttributes = new WeakMap<object, unknown>();

/**
 * The BUILD state recorded for an object (e.g. the `_metadata` attribute of a
 * state_dict OrderedDict), or undefined.
 */
export function getPyState(obj: object): unknown {
  return obj instanceof PyOpaque ? obj.state : pyAttributes.get(obj);
}

/** True for a value that was a Python tuple. */
export function isTuple(x: unknown): x is readonly unknown[] {
  return Array.isArray(x) && Object.isFrozen(x);
}

function tuple(items: unknown[]): readonly unknown[] {
  return Object.freeze(items);
}

const OPNAMES: Record<number, string> = {
  0x28: "MARK", 0x2e: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT", 0x49: "INT",
  0x4a: "BININT", 0x4b: "BININT1", 0x4c: "LONG", 0x4d: "BININT2", 0x4e: "NONE", 0x50: "PERSID",
  0x51: "BINPERSID", 0x52: "REDUCE", 0x53: "STRING", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING",
  0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND", 0x62: "BUILD", 0x63: "GLOBAL", 0x64: "DICT",
  0x7d: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET", 0x69: "INST", 0x6a: "LONG_BINGET",
  0x6c: "LIST", 0x5d: "EMPTY_LIST", 0x6f: "OBJ", 0x70: "PUT", 0x71: "BINPUT", 0x72: "LONG_BINPUT",
  0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE", 0x75: "SETITEMS", 0x47: "BINFLOAT",
  0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2",
  0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4", 0x42: "BINBYTES",
  0x43: "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8", 0x8e: "BINBYTES8",
  0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL",
  0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
};

const utf8 = new TextDecoder("utf-8", { fatal: true });

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

/** Integer from a JS-safe range to number, otherwise bigint. */
function normInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Little-endian two's complement (LONG1/LONG4). */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  if (bytes[bytes.length - 1] & 0x80) v -= 1n << BigInt(8 * bytes.length);
  return normInt(v);
}

/** Python's escape decoding for protocol-0 STRING (a repr in quotes) and UNICODE (raw-unicode-escape). */
function unescapePython(s: string, raw: boolean): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== "\\" || i + 1 >= s.length) {
      out += c;
      continue;
    }
    const e = s[i + 1];
    if (raw) {
      if (e === "u" || e === "U") {
        const len = e === "u" ? 4 : 8;
        const hex = s.slice(i + 2, i + 2 + len);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== len) throw new Error("bad \\u escape in UNICODE");
        out += String.fromCodePoint(parseInt(hex, 16));
        i += 1 + len;
      } else out += c;
      continue;
    }
    i++;
    const simple: Record<string, string> = {
      "\\": "\\", "'": "'", '"': '"', a: "\x07", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v", "\n": "",
    };
    if (Object.prototype.hasOwnProperty.call(simple, e)) out += simple[e];
    else if (e === "x") {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Error("bad \\x escape in STRING");
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else if (e >= "0" && e <= "7") {
      const m = /^[0-7]{1,3}/.exec(s.slice(i, i + 3))![0];
      out += String.fromCharCode(parseInt(m, 8) & 0xff);
      i += m.length - 1;
    } else out += "\\" + e;
  }
  return out;
}

function parseIntText(text: string, what: string): number | bigint | boolean {
  if (what === "INT") {
    if (text === "00") return false;
    if (text === "01") return true;
  }
  const t = what === "LONG" && text.endsWith("L") ? text.slice(0, -1) : text;
  if (!/^[+-]?[0-9]+$/.test(t)) throw new Error(`bad ${what} literal ${JSON.stringify(text)}`);
  return normInt(BigInt(t));
}

export interface UnpickleResult {
  value: unknown;
  /** Offset just past the STOP opcode. */
  end: number;
}

/**
 * Unpickles one pickle starting at `offset` of `data` and returns the value
 * and where it ended (several pickles can follow each other, as in the
 * legacy torch format).
 */
export function unpickleAt(data: Uint8Array, offset: number, options: UnpickleOptions): UnpickleResult {
  const source = options.source ?? "<pickle>";
  const hint = options.refusalHint ?? "only allow-listed globals can be loaded";
  // a plain Uint8Array view, so that copies and subarrays never turn into Buffers
  data = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = offset;
  let opStart = offset;
  let op = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (msg: string, truncated = false): never => {
    const name = OPNAMES[op] ?? `0x${op.toString(16).padStart(2, "0")}`;
    throw new PickleError(`${source}: ${msg} (pickle opcode ${name} at byte ${opStart})`, truncated);
  };
  const need = (n: number) => {
    if (n < 0 || pos + n > data.length) fail(`unexpected end of pickle data (needs ${n} more bytes)`, true);
  };
  const u8 = () => {
    need(1);
    return data[pos++];
  };
  const bytes = (n: number | bigint): Uint8Array => {
    if (typeof n === "bigint") {
      if (n > BigInt(data.length)) fail(`unexpected end of pickle data (needs ${n} more bytes)`, true);
      n = Number(n);
    }
    need(n);
    const b = data.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const u16 = () => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = () => {
    need(4);
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): bigint => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    return v;
  };
  const line = (): string => {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0) fail("unexpected end of pickle data (missing newline)", true);
    const s = latin1(data.subarray(pos, nl));
    pos = nl + 1;
    return s.endsWith("\r") ? s.slice(0, -1) : s;
  };
  const decodeUtf8 = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      return fail("string is not valid UTF-8");
    }
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail("stack underflow");
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail("stack underflow");
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (prev === undefined) fail("MARK missing");
    stack = prev!;
    return items;
  };
  const push = (v: unknown) => {
    stack.push(v);
  };
  const resolve = (module: string, name: string): PyGlobal => {
    let impl: GlobalImpl | undefined;
    try {
      impl = options.findGlobal(module, name);
    } catch (e) {
      fail((e as Error).message);
    }
    if (impl !== undefined) return new PyGlobal(module, name, impl);
    if (options.opaqueGlobals) return new PyGlobal(module, name, {}, true);
    throw new PickleError(`${source}: refusing to load global "${module}.${name}" (${hint})`);
  };
  const callGlobal = (callee: unknown, args: readonly unknown[]): unknown => {
    if (!(callee instanceof PyGlobal)) return fail(`cannot call a ${describe(callee)}`);
    if (callee.opaque) return new PyOpaque(callee.module, callee.name, args);
    if (callee.impl.call === undefined) return fail(`global "${callee.qualifiedName}" cannot be called`);
    try {
      return callee.impl.call(args);
    } catch (e) {
      return fail(`${callee.qualifiedName}: ${(e as Error).message}`);
    }
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (items.length % 2 !== 0) fail("odd number of items for a dict");
    const map = target instanceof Map ? target : target instanceof PyOpaque ? target.dictItems : undefined;
    if (map === undefined) return fail(`cannot set items on a ${describe(target)}`);
    for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    const list = Array.isArray(target) && !isTuple(target) ? target : target instanceof PyOpaque ? target.listItems : undefined;
    if (list === undefined) return fail(`cannot append to a ${describe(target)}`);
    for (const it of items) list.push(it);
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) fail(`memo entry ${i} is missing`);
    push(memo.get(i));
  };
  const memoPut = (i: number) => {
    memo.set(i, top());
  };

  while (true) {
    opStart = pos;
    op = u8();
    switch (op) {
      case 0x80: {
        // PROTO
        const v = u8();
        if (v > 5) fail(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95: // FRAME: only a prefetch hint
        u64();
        break;
      case 0x2e: // STOP
        if (metastack.length !== 0) fail("unbalanced MARK at STOP");
        if (stack.length !== 1) fail(`stack has ${stack.length} items at STOP (expected 1)`);
        return { value: stack[0], end: pos };

      // --- constants and numbers
      case 0x4e: push(null); break;
      case 0x88: push(true); break;
      case 0x89: push(false); break;
      case 0x4a: push(i32()); break;
      case 0x4b: push(u8()); break;
      case 0x4d: push(u16()); break;
      case 0x8a: push(decodeLong(bytes(u8()))); break;
      case 0x8b: {
        const n = i32();
        if (n < 0) fail("negative LONG4 length");
        push(decodeLong(bytes(n)));
        break;
      }
      case 0x49: // INT
      case 0x4c: // LONG
        try {
          push(parseIntText(line(), op === 0x49 ? "INT" : "LONG"));
        } catch (e) {
          if (e instanceof PickleError) throw e;
          fail((e as Error).message);
        }
        break;
      case 0x47: {
        need(8);
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x46: {
        const t = line().trim();
        if (t === "") fail("empty FLOAT literal");
        if (/^[+-]?inf$/i.test(t)) push(t.startsWith("-") ? -Infinity : Infinity);
        else if (/^[+-]?nan$/i.test(t)) push(NaN);
        else {
          const v = Number(t);
          if (Number.isNaN(v)) fail(`bad FLOAT literal ${JSON.stringify(t)}`);
          push(v);
        }
        break;
      }

      // --- strings and bytes
      case 0x58: push(decodeUtf8(bytes(u32()))); break;
      case 0x8c: push(decodeUtf8(bytes(u8()))); break;
      case 0x8d: push(decodeUtf8(bytes(u64()))); break;
      case 0x56: {
        try {
          push(unescapePython(line(), true));
        } catch (e) {
          if (e instanceof PickleError) throw e;
          fail((e as Error).message);
        }
        break;
      }
      case 0x54: {
        // BINSTRING (python 2 str): decoded as latin-1
        const n = i32();
        if (n < 0) fail("negative BINSTRING length");
        push(latin1(bytes(n)));
        break;
      }
      case 0x55: push(latin1(bytes(u8()))); break;
      case 0x53: {
        const t = line().trim();
        const q = t[0];
        if (t.length < 2 || (q !== "'" && q !== '"') || t[t.length - 1] !== q) fail("STRING is not quoted");
        try {
          push(unescapePython(t.slice(1, -1), false));
        } catch (e) {
          fail((e as Error).message);
        }
        break;
      }
      case 0x42: push(new Uint8Array(bytes(u32()))); break;
      case 0x43: push(new Uint8Array(bytes(u8()))); break;
      case 0x8e: push(new Uint8Array(bytes(u64()))); break;
      case 0x96: push(new Uint8Array(bytes(u64()))); break;
      case 0x97: fail("out-of-band buffers (NEXT_BUFFER) are not supported"); break;
      case 0x98: break; // READONLY_BUFFER: no-op for us

      // --- containers
      case 0x28: metastack.push(stack); stack = []; break;
      case 0x5d: push([]); break;
      case 0x7d: push(new Map()); break;
      case 0x29: push(tuple([])); break;
      case 0x8f: push(new Set()); break;
      case 0x85: push(tuple([pop()])); break;
      case 0x86: {
        const b = pop();
        const a = pop();
        push(tuple([a, b]));
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        push(tuple([a, b, c]));
        break;
      }
      case 0x74: push(tuple(popMark())); break;
      case 0x6c: push(popMark()); break;
      case 0x64: {
        const items = popMark();
        const m = new Map();
        setItems(m, items);
        push(m);
        break;
      }
      case 0x91: push(new Set(popMark())); break;
      case 0x61: {
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x90: {
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail(`cannot add items to a ${describe(s)}`);
        for (const it of items) (s as Set<unknown>).add(it);
        break;
      }

      // --- stack and memo
      case 0x30: {
        if (stack.length > 0) stack.pop();
        else popMark();
        break;
      }
      case 0x31: popMark(); break;
      case 0x32: push(top()); break;
      case 0x68: memoGet(u8()); break;
      case 0x6a: memoGet(u32()); break;
      case 0x67: {
        const t = line();
        if (!/^[0-9]+$/.test(t)) fail(`bad GET index ${JSON.stringify(t)}`);
        memoGet(Number(t));
        break;
      }
      case 0x71: memoPut(u8()); break;
      case 0x72: memoPut(u32()); break;
      case 0x70: {
        const t = line();
        if (!/^[0-9]+$/.test(t)) fail(`bad PUT index ${JSON.stringify(t)}`);
        memoPut(Number(t));
        break;
      }
      case 0x94: memoPut(memo.size); break;

      // --- globals and object construction (only through findGlobal)
      case 0x63: {
        const module = line();
        const name = line();
        push(resolve(module, name));
        break;
      }
      case 0x93: {
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL needs two strings");
        push(resolve(module as string, name as string));
        break;
      }
      case 0x69: {
        // INST: like GLOBAL followed by OBJ
        const module = line();
        const name = line();
        const args = popMark();
        push(callGlobal(resolve(module, name), tuple(args)));
        break;
      }
      case 0x6f: {
        const items = popMark();
        if (items.length === 0) fail("OBJ without a class");
        push(callGlobal(items[0], tuple(items.slice(1))));
        break;
      }
      case 0x52: {
        const args = pop();
        const callee = pop();
        if (!isTuple(args)) fail(`REDUCE arguments are a ${describe(args)}, not a tuple`);
        push(callGlobal(callee, args as readonly unknown[]));
        break;
      }
      case 0x81: {
        const args = pop();
        const cls = pop();
        if (!isTuple(args)) fail(`NEWOBJ arguments are a ${describe(args)}, not a tuple`);
        push(callGlobal(cls, args as readonly unknown[]));
        break;
      }
      case 0x92: {
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!isTuple(args)) fail("NEWOBJ_EX arguments are not a tuple");
        if (!(kwargs instanceof Map) || kwargs.size > 0) fail("NEWOBJ_EX with keyword arguments is not supported");
        push(callGlobal(cls, args as readonly unknown[]));
        break;
      }
      case 0x62: {
        // BUILD: record the state; nothing is executed
        const state = pop();
        const obj = top();
        if (obj instanceof PyOpaque) obj.state = state;
        else if (typeof obj === "object" && obj !== null && !(obj instanceof PyGlobal)) {
          const empty = state === null || (state instanceof Map && state.size === 0);
          if (!empty) pyAttributes.set(obj, state);
        } else fail(`cannot BUILD a ${describe(obj)}`);
        break;
      }
      case 0x51: {
        const pid = pop();
        if (!options.persistentLoad) fail("persistent id in a pickle that does not allow them");
        try {
          push(options.persistentLoad!(pid));
        } catch (e) {
          if (e instanceof PickleError) throw e;
          fail((e as Error).message);
        }
        break;
      }
      case 0x50: {
        const pid = line();
        if (!options.persistentLoad) fail("persistent id in a pickle that does not allow them");
        try {
          push(options.persistentLoad!(pid));
        } catch (e) {
          if (e instanceof PickleError) throw e;
          fail((e as Error).message);
        }
        break;
      }
      case 0x82:
      case 0x83:
      case 0x84:
        fail("extension registry codes (EXT1/EXT2/EXT4) are not supported");
        break;
      default:
        fail(`unknown opcode 0x${op.toString(16).padStart(2, "0")}`);
    }
  }
}

/** Unpickles a buffer holding exactly one pickle (trailing bytes are an error). */
export function unpickle(data: Uint8Array, options: UnpickleOptions): unknown {
  const { value, end } = unpickleAt(data, 0, options);
  if (end !== data.length) {
    throw new PickleError(`${options.source ?? "<pickle>"}: ${data.length - end} trailing bytes after the pickle STOP opcode`);
  }
  return value;
}

/** Short description of a value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return "None";
  if (v instanceof PyGlobal) return `global ${v.qualifiedName}`;
  if (v instanceof PyOpaque) return `${v.module}.${v.name} object`;
  if (v instanceof Map) return "dict";
  if (v instanceof Set) return "set";
  if (v instanceof Uint8Array) return "bytes";
  if (isTuple(v)) return "tuple";
  if (Array.isArray(v)) return "list";
  return typeof v;
}

// ---------------------------------------------------------------------------
// Safe implementations of the few Python builtins that plain data pickles use

function latin1Bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new Error("string is not latin-1");
    out[i] = c;
  }
  return out;
}

const isLatin1 = (enc: unknown) => typeof enc === "string" && /^(latin-?1|iso-?8859-?1)$/i.test(enc);

const BUILTINS: Record<string, GlobalImpl> = {
  // OrderedDict() then SETITEMS, or OrderedDict([(k, v), ...])
  "collections.OrderedDict": {
    call: (a) => {
      const m = new Map<unknown, unknown>();
      if (a.length === 0 || a[0] === null) return m;
      if (a.length > 1) throw new Error("keyword-style construction is not supported");
      const src = a[0];
      if (src instanceof Map) return new Map(src);
      if (!Array.isArray(src)) throw new Error(`cannot build from a ${describe(src)}`);
      for (const pair of src) {
        if (!Array.isArray(pair) || pair.length !== 2) throw new Error("items must be (key, value) pairs");
        m.set(pair[0], pair[1]);
      }
      return m;
    },
  },
  // set([...]) / frozenset([...]) (protocols < 4)
  "builtins.set": {
    call: (a) => {
      if (a.length === 0) return new Set();
      const src = a[0];
      if (src instanceof Set || Array.isArray(src)) return new Set(src);
      throw new Error(`cannot build a set from a ${describe(src)}`);
    },
  },
  // protocols < 3 pickle bytes as _codecs.encode(str, "latin1")
  "_codecs.encode": {
    call: (a) => {
      if (typeof a[0] !== "string" || !isLatin1(a[1])) throw new Error("only _codecs.encode(str, 'latin1') is supported");
      return latin1Bytes(a[0]);
    },
  },
  // bytearray() / bytearray(str, "latin-1") / bytearray(bytes) (protocols < 5)
  "builtins.bytearray": {
    call: (a) => {
      if (a.length === 0) return new Uint8Array(0);
      if (a[0] instanceof Uint8Array) return new Uint8Array(a[0]);
      if (typeof a[0] === "string" && isLatin1(a[1])) return latin1Bytes(a[0]);
      throw new Error("unsupported bytearray arguments");
    },
  },
};
BUILTINS["builtins.frozenset"] = BUILTINS["builtins.set"];
BUILTINS["__builtin__.set"] = BUILTINS["builtins.set"];
BUILTINS["__builtin__.frozenset"] = BUILTINS["builtins.set"];
BUILTINS["__builtin__.bytearray"] = BUILTINS["builtins.bytearray"];

/**
 * JavaScript stand-ins for the harmless Python globals that ordinary data
 * pickles reference: collections.OrderedDict, set, frozenset, bytearray and
 * _codecs.encode(str, "latin1"). Usable as (part of) a findGlobal.
 */
export function findBuiltinGlobal(module: string, name: string): GlobalImpl | undefined {
  const q = `${module}.${name}`;
  return Object.prototype.hasOwnProperty.call(BUILTINS, q) ? BUILTINS[q] : undefined;
}
