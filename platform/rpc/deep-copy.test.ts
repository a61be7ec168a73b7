import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { OrderCreatedSchema } from "../../gen/orders/v1/events_pb.ts";
import { ErrorInfoSchema } from "../../gen/selaras/v1/errors_pb.ts";
import { deepCopy } from "./deep-copy.ts";

describe("deepCopy", () => {
  it("copies a message with nested messages, lists, maps, bigints and bytes, sharing nothing", () => {
    const src = create(OrderCreatedSchema, {
      orderId: "o1",
      lines: [{ productId: "p1", quantity: 2, unitPriceCents: 5n, lineTotalCents: 10n }],
      totalCents: 10n,
      createdAt: timestampFromMs(1_700_000_000_123),
    });
    const copy = deepCopy(src);
    expect(copy).toEqual(src);
    copy.lines[0]!.quantity = 99;
    copy.lines.push(copy.lines[0]!);
    copy.createdAt!.seconds = 1n;
    expect(src.lines).toHaveLength(1);
    expect(src.lines[0]!.quantity).toBe(2);
    expect(src.createdAt!.seconds).toBe(1_700_000_000n);

    const info = create(ErrorInfoSchema, { reason: "r", metadata: { a: "1" } });
    const infoCopy = deepCopy(info);
    infoCopy.metadata.a = "2";
    expect(info.metadata.a).toBe("1");

    const bytes = { b: new Uint8Array([1, 2]) };
    const bytesCopy = deepCopy(bytes);
    bytesCopy.b[0] = 9;
    expect(bytes.b[0]).toBe(1);
  });

  it("keeps a message's prototype", () => {
    const proto = { inherited: 1 };
    const src = Object.assign(Object.create(proto), { own: [1] });
    const copy = deepCopy(src);
    expect(Object.getPrototypeOf(copy)).toBe(proto);
    expect(copy.own).not.toBe(src.own);
  });
});
