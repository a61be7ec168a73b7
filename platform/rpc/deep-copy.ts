/**
 * A deep copy of a protobuf-es message (or any tree of plain objects, arrays, Uint8Arrays and
 * primitives), keeping each object's prototype (proto2 messages keep defaults there).
 * Several times faster than protobuf-es `clone`, which walks the message by reflection — on the
 * in-process RPC path the copy is most of the cost.
 * @example const copy = deepCopy(request);
 */
export function deepCopy<T>(value: T): T {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) {
    const out = new Array(value.length);
    for (let i = 0; i < value.length; i++) out[i] = deepCopy(value[i]);
    return out as T;
  }
  if (value instanceof Uint8Array) return value.slice() as T;
  const proto = Object.getPrototypeOf(value);
  const out = proto === Object.prototype ? {} : Object.create(proto);
  for (const key in value) {
    if (Object.prototype.hasOwnProperty.call(value, key)) out[key] = deepCopy((value as Record<string, unknown>)[key]);
  }
  return out as T;
}
