import { describe, expect, it } from "vitest";
import { newCustomer, normalizeEmail } from "./customer.ts";

describe("customer domain", () => {
  it("normalises an email to trimmed lower case", () => {
    expect(normalizeEmail("  Ana.Sari@Example.COM\t")).toBe("ana.sari@example.com");
    expect(normalizeEmail("ana@example.com")).toBe("ana@example.com");
  });

  it("a new customer holds the normalised email and the given fields", () => {
    const c = newCustomer({ id: "c1", email: " Budi@Mail.ID ", name: "Budi", creditLimitCents: 50_000, now: 1_700_000_000_000 });
    expect(c).toEqual({ id: "c1", email: "budi@mail.id", name: "Budi", creditLimitCents: 50_000, createdAt: 1_700_000_000_000 });
  });

  it("two emails differing only in case or surrounding space are the same customer identity", () => {
    const a = newCustomer({ id: "a", email: "Dewi@X.com", name: "A", creditLimitCents: 0, now: 0 });
    const b = newCustomer({ id: "b", email: " dewi@x.COM", name: "B", creditLimitCents: 0, now: 0 });
    expect(a.email).toBe(b.email);
  });
});
