// Deterministic freeing of native memory. Every tensor created inside tidy(fn) is freed when fn
// returns, except the tensors fn returns (they move to the enclosing scope) and tensors marked
// with keep() (parameters, optimizer state, caches). Outside any scope nothing is tracked and a
// tensor lives until dispose() or, as a backstop, until V8 collects its handle.

export interface Trackable {
  dispose(): void;
  readonly isKept: boolean;
}

const stack: Set<Trackable>[] = [];

export function track<T extends Trackable>(t: T): T {
  if (stack.length > 0) stack[stack.length - 1].add(t);
  return t;
}

/** Detach a tensor from every open scope so it survives them (until its own dispose()). */
export function untrack(t: Trackable): void {
  for (const s of stack) s.delete(t);
}

function collect(value: unknown, out: Set<Trackable>, depth = 0): void {
  if (value === null || typeof value !== "object" || depth > 4) return;
  if (typeof (value as Trackable).dispose === "function" && "isKept" in (value as object)) {
    out.add(value as Trackable);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, out, depth + 1);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, out, depth + 1);
}

function close(scope: Set<Trackable>, result: unknown): void {
  const escaping = new Set<Trackable>();
  collect(result, escaping);
  for (const t of scope) {
    if (escaping.has(t)) {
      if (stack.length > 0) stack[stack.length - 1].add(t);
    } else if (!t.isKept) {
      t.dispose();
    }
  }
}

/** Run fn; free every tensor it created that it does not return (arrays, Maps and plain objects of tensors are searched). */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Trackable>();
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    close(scope, undefined);
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) throw new Error("tidy(): fn returned a Promise; use tidyAsync for async work");
  close(scope, result);
  return result;
}

/** tidy for async functions: only use it when no other tidy runs concurrently (scopes are a stack). */
export async function tidyAsync<T>(fn: () => Promise<T>): Promise<T> {
  const scope = new Set<Trackable>();
  stack.push(scope);
  const depth = stack.length;
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    if (stack.length === depth) stack.pop();
    close(scope, undefined);
    throw e;
  }
  if (stack.length !== depth || stack[depth - 1] !== scope) throw new Error("tidyAsync(): scopes were interleaved");
  stack.pop();
  close(scope, result);
  return result;
}

export function scopeDepth(): number {
  return stack.length;
}
