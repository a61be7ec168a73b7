/*
 * pgoutput text values to JSON-friendly JS values, by type OID, following what Debezium's
 * Postgres connector emits with `decimal.handling.mode=string`, `time.precision.mode=connect`
 * and `binary.handling.mode=base64` (see README.md for the table). The walsender session runs
 * with DateStyle=ISO and TimeZone=UTC (set by the reader), which the date parsing relies on.
 */

const MS_PER_DAY = 86_400_000;

/** A decoder of one element's text. */
type Decode = (text: string) => unknown;

const text: Decode = (s) => s;
const bool: Decode = (s) => s === "t";
const int: Decode = (s) => Number(s);
/** int8 beyond ±2^53 would silently round as a number: those (rare) values stay strings. */
const int8: Decode = (s) => {
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : s;
};
/** NaN and ±Infinity have no JSON form: they stay the strings Postgres wrote. */
const float: Decode = (s) => {
  const n = Number(s);
  return Number.isFinite(n) ? n : s;
};
const json: Decode = (s) => JSON.parse(s);
/** bytea's hex output (`\x0aff`) as base64, like Debezium's JSON. */
const bytea: Decode = (s) => (s.startsWith("\\x") ? Buffer.from(s.slice(2), "hex").toString("base64") : s);
/** `date` → days since 1970-01-01 (Debezium `io.debezium.time.Date`). */
const date: Decode = (s) => {
  const m = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/.exec(s);
  if (!m) return s; // infinity, -infinity
  return Math.floor(utcMs(year(m[1]!, m[4]), +m[2]!, +m[3]!, 0, 0, 0, 0) / MS_PER_DAY);
};
const TIMESTAMP = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(\.\d{1,6})?([+-]\d\d(?::?\d\d){0,2})?( BC)?$/;
/** `timestamp` (no zone) → epoch milliseconds, sub-ms digits dropped (Debezium `io.debezium.time.Timestamp`). */
const timestamp: Decode = (s) => {
  const m = TIMESTAMP.exec(s);
  if (!m) return s;
  return utcMs(year(m[1]!, m[9]), +m[2]!, +m[3]!, +m[4]!, +m[5]!, +m[6]!, fractionMs(m[7]));
};
/**
 * `timestamptz` → ISO-8601 in UTC with every digit Postgres kept, e.g. `2024-05-01T10:00:00.123456Z`
 * (Debezium `io.debezium.time.ZonedTimestamp`).
 */
const timestamptz: Decode = (s) => {
  const m = TIMESTAMP.exec(s);
  if (!m) return s;
  const [, y, mo, d, h, mi, sec, frac = "", offset = "+00", bc] = m;
  if (!bc && y!.length === 4 && /^\+00(:?00){0,2}$/.test(offset)) return `${y}-${mo}-${d}T${h}:${mi}:${sec}${frac}Z`;
  // Not UTC (the session time zone was changed) or out of ISO's year range: exact to the ms.
  const ms = utcMs(year(y!, bc), +mo!, +d!, +h!, +mi!, +sec!, fractionMs(frac)) - offsetMs(offset);
  return new Date(ms).toISOString();
};

/** Element decoders by type OID; a type not listed (enums, domains, time, interval, …) stays text. */
const scalars = new Map<number, Decode>([
  [16, bool], [17, bytea], [20, int8], [21, int], [23, int], [26, int],
  [114, json], [3802, json], [700, float], [701, float],
  [1082, date], [1114, timestamp], [1184, timestamptz],
]);

/** Array type OID → element type OID, for the arrays of the types above and of text types. */
const arrays = new Map<number, number>([
  [1000, 16], [1001, 17], [1016, 20], [1005, 21], [1007, 23], [1028, 26],
  [199, 114], [3807, 3802], [1021, 700], [1022, 701], [1231, 1700],
  [1182, 1082], [1115, 1114], [1185, 1184],
  [1009, 25], [1015, 1043], [1014, 1042], [2951, 2950], [1002, 18], [1003, 19],
]);

/** The JS value of a column's text, by its type OID. */
export function decodeValue(value: string, typeOid: number): unknown {
  const element = arrays.get(typeOid);
  if (element !== undefined) return parseArray(value, scalars.get(element) ?? text);
  return (scalars.get(typeOid) ?? text)(value);
}

/** Postgres array text (`{1,NULL,"a,b"}`, nested, optional `[l:u]=` bounds) as nested JS arrays. */
export function parseArray(s: string, decode: Decode): unknown[] {
  let i = s.startsWith("[") ? s.indexOf("=") + 1 : 0;
  const fail = (): never => {
    throw new Error(`malformed array literal: ${s}`);
  };
  const parse = (): unknown[] => {
    if (s[i] !== "{") fail();
    i++;
    const out: unknown[] = [];
    if (s[i] === "}") {
      i++;
      return out;
    }
    for (;;) {
      if (s[i] === "{") out.push(parse());
      else if (s[i] === '"') {
        let v = "";
        for (i++; s[i] !== '"'; i++) {
          if (i >= s.length) fail();
          if (s[i] === "\\") i++;
          v += s[i];
        }
        i++;
        out.push(decode(v));
      } else {
        const start = i;
        while (i < s.length && s[i] !== "," && s[i] !== "}") i++;
        const raw = s.slice(start, i);
        out.push(raw === "NULL" ? null : decode(raw));
      }
      if (s[i] === ",") i++;
      else if (s[i] === "}") {
        i++;
        return out;
      } else fail();
    }
  };
  return parse();
}

function year(digits: string, bc: string | undefined): number {
  // 1 BC is year 0 in the proleptic Gregorian calendar JS dates use.
  return bc ? 1 - Number(digits) : Number(digits);
}

function fractionMs(frac: string | undefined): number {
  // Digits, not float arithmetic: 0.029 * 1000 is 28.999….
  return frac ? Number(`${frac.slice(1)}00`.slice(0, 3)) : 0;
}

function offsetMs(offset: string): number {
  const m = /^([+-])(\d\d):?(\d\d)?:?(\d\d)?$/.exec(offset);
  if (!m) return 0;
  const ms = ((+m[2]! * 60 + +(m[3] ?? 0)) * 60 + +(m[4] ?? 0)) * 1000;
  return m[1] === "-" ? -ms : ms;
}

function utcMs(y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number): number {
  // Date.UTC maps years 0–99 to 1900–1999; setUTCFullYear does not.
  const t = new Date(0);
  t.setUTCFullYear(y, mo - 1, d);
  t.setUTCHours(h, mi, s, ms);
  return t.getTime();
}
