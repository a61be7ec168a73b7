import { describe, expect, it } from "vitest";
import { decodeValue, parseArray } from "./decode-value.ts";

// Unit: pgoutput text (DateStyle ISO, TimeZone UTC) → JS values, by type OID.
describe("decodeValue", () => {
  it("reads integers as numbers, int8 beyond 2^53 as a string", () => {
    expect(decodeValue("-32768", 21)).toBe(-32768);
    expect(decodeValue("2147483647", 23)).toBe(2147483647);
    expect(decodeValue("9007199254740991", 20)).toBe(9007199254740991);
    expect(decodeValue("9007199254740993", 20)).toBe("9007199254740993");
    expect(decodeValue("-9223372036854775808", 20)).toBe("-9223372036854775808");
  });

  it("keeps numeric exact as a string; floats are numbers unless not finite", () => {
    expect(decodeValue("12345678901234567890.123456789", 1700)).toBe("12345678901234567890.123456789");
    expect(decodeValue("1.5", 701)).toBe(1.5);
    expect(decodeValue("NaN", 701)).toBe("NaN");
    expect(decodeValue("-Infinity", 700)).toBe("-Infinity");
  });

  it("reads bool, json, jsonb, bytea and leaves text types alone", () => {
    expect(decodeValue("t", 16)).toBe(true);
    expect(decodeValue("f", 16)).toBe(false);
    expect(decodeValue('{"a": [1, "x"]}', 3802)).toEqual({ a: [1, "x"] });
    expect(decodeValue("[1,2]", 114)).toEqual([1, 2]);
    expect(decodeValue("\\x01ff", 17)).toBe(Buffer.from([1, 255]).toString("base64"));
    expect(decodeValue("héllo", 25)).toBe("héllo");
    expect(decodeValue("0e9c2b3a-0000-4000-8000-000000000000", 2950)).toBe("0e9c2b3a-0000-4000-8000-000000000000");
    expect(decodeValue("01:02:03", 1083)).toBe("01:02:03"); // time stays text
    expect(decodeValue("happy", 99999)).toBe("happy"); // an enum (unknown OID)
  });

  it("reads timestamptz as ISO-8601 UTC with every digit, timestamp as epoch ms, date as epoch days", () => {
    expect(decodeValue("2024-05-01 10:00:00.123456+00", 1184)).toBe("2024-05-01T10:00:00.123456Z");
    expect(decodeValue("2024-05-01 10:00:00+00", 1184)).toBe("2024-05-01T10:00:00Z");
    expect(decodeValue("2024-05-01 12:00:00.5+02", 1184)).toBe("2024-05-01T10:00:00.500Z");
    expect(decodeValue("2024-05-01 10:00:00.029", 1114)).toBe(Date.UTC(2024, 4, 1, 10, 0, 0, 29));
    expect(decodeValue("0050-01-01 00:00:00", 1114)).toBe(new Date("0050-01-01T00:00:00Z").getTime());
    expect(decodeValue("1970-01-02", 1082)).toBe(1);
    expect(decodeValue("1969-12-31", 1082)).toBe(-1);
    expect(decodeValue("infinity", 1184)).toBe("infinity");
    expect(decodeValue("-infinity", 1082)).toBe("-infinity");
  });

  it("reads arrays, nested, quoted, with NULLs and bounds", () => {
    expect(decodeValue("{1,NULL,3}", 1007)).toEqual([1, null, 3]);
    expect(decodeValue("{{1,2},{3,4}}", 1016)).toEqual([[1, 2], [3, 4]]);
    expect(decodeValue('{"a,b","c\\"d",NULL,"NULL",plain}', 1009)).toEqual(["a,b", 'c"d', null, "NULL", "plain"]);
    expect(decodeValue("{}", 1009)).toEqual([]);
    expect(decodeValue("[0:1]={t,f}", 1000)).toEqual([true, false]);
    expect(decodeValue('{"{\\"a\\": 1}"}', 3807)).toEqual([{ a: 1 }]);
    expect(() => parseArray("{1,2", Number)).toThrow(/malformed/);
  });
});
