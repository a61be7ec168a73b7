import { describe, expect, it } from "vitest";
import { consumerToken, eventStream, eventStreamSubjects, eventSubject, partitionOf, splitType } from "./names.ts";

describe("NATS names", () => {
  it("splits a type at its package's version token", () => {
    expect(splitType("orders.v1.OrderCreated")).toEqual({ pkg: "orders.v1", name: "OrderCreated" });
    expect(splitType("order_history.v2beta1.Row")).toEqual({ pkg: "order_history.v2beta1", name: "Row" });
    expect(splitType("orders.v1.Order.Line")).toEqual({ pkg: "orders.v1", name: "Order_Line" });
    expect(splitType("google.protobuf.StringValue")).toEqual({ pkg: "google.protobuf", name: "StringValue" });
    expect(() => splitType("Bare")).toThrow(/fully-qualified/);
    expect(() => splitType("a.b>.C")).toThrow(/fully-qualified/);
  });

  it("derives subjects and partition streams from the prefix and the type", () => {
    expect(eventSubject("selaras", "orders.v1.OrderCreated", 3)).toBe("selaras.events.orders.v1.OrderCreated.3");
    expect(eventStream("selaras", "orders.v1", 0)).toBe("SELARAS_ORDERS_V1");
    expect(eventStream("selaras", "orders.v1", 2)).toBe("SELARAS_ORDERS_V1_P2");
    expect(eventStreamSubjects("selaras", "orders.v1", 2)).toBe("selaras.events.orders.v1.*.2");
    expect(eventStream("t-1", "order_history.v1", 0)).toBe("T-1_ORDER_HISTORY_V1");
    expect(() => eventStream("selaras", "dlq", 0)).toThrow(/clashes/);
  });

  it("makes consumer names NATS-safe", () => {
    expect(consumerToken("order-history.projection")).toBe("order-history_projection");
    expect(consumerToken("test.0193 x*>")).toBe("test_0193_x__");
  });

  it("puts an aggregate on one stable partition, and spreads aggregates over all of them", () => {
    // FNV-1a 32 of the UTF-8 bytes: fixed values, the same in every process and language.
    expect(partitionOf("", 1000)).toBe(0x811c9dc5 % 1000);
    expect(partitionOf("a", 1 << 30)).toBe(0xe40c292c % (1 << 30));
    expect(partitionOf("order-42", 1)).toBe(0);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[partitionOf(`agg-${i}`, 4)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(800);
    expect(partitionOf("ärger-✓", 7)).toBe(partitionOf("ärger-✓", 7));
  });
});
