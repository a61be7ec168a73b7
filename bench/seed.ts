/** Seed data for the end-to-end phases, created over the public REST API, and the orders the load generators send. */
import type { E2eOptions } from "./e2e.ts";
import type { OrderBody } from "./load.ts";

async function postJson(url: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

/** Runs `make(i)` for i in [0, n) with at most `concurrency` at a time. */
async function pool<T>(n: number, concurrency: number, make: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await make(i);
    }
  }));
  return out;
}

/** Deterministic pseudo-random numbers (mulberry32), so every run sends the same orders. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Creates the products and customers (and stock, when inventory runs) and a pool of order bodies.
 * `urlOf(module)`: base URL of the process hosting the module.
 */
export async function seed(urlOf: (module: string) => string, opts: Pick<E2eOptions, "products" | "customers" | "modules">) {
  const runId = Date.now().toString(36);
  const products = await pool(opts.products, 8, async (i) => {
    const r = await postJson(`${urlOf("catalog")}/api/v1/products`, { sku: `BENCH-${runId}-${i}`, name: `Bench product ${i}`, priceCents: 100 + ((i * 37) % 4900) });
    if (r.status !== 201) throw new Error(`POST /api/v1/products answered ${r.status}: ${JSON.stringify(r.json)}`);
    return String(r.json.id);
  });
  const customers = await pool(opts.customers, 8, async (i) => {
    const r = await postJson(`${urlOf("customers")}/api/v1/customers`, { email: `bench-${runId}-${i}@example.com`, name: `Bench Customer ${i}`, creditLimitCents: 1_000_000_000_000 });
    if (r.status !== 201) throw new Error(`POST /api/v1/customers answered ${r.status}: ${JSON.stringify(r.json)}`);
    return String(r.json.id);
  });
  let restocked = false;
  if (opts.modules.includes("inventory")) {
    await pool(products.length, 8, async (i) => {
      const r = await postJson(`${urlOf("inventory")}/api/v1/inventory/${products[i]}/restock`, { quantity: 100_000_000 });
      if (r.status !== 200 && r.status !== 201) throw new Error(`POST /api/v1/inventory/{id}/restock answered ${r.status}: ${JSON.stringify(r.json)}`);
    });
    restocked = true;
  }
  const random = rng(42);
  const bodies: OrderBody[] = Array.from({ length: 8192 }, () => {
    const customer = Math.floor(random() * customers.length);
    const n = 1 + Math.floor(random() * 3);
    const picked = new Set<number>();
    while (picked.size < n) picked.add(Math.floor(random() * products.length));
    const lines = [...picked].map((p) => ({ productId: products[p]!, quantity: 1 + Math.floor(random() * 3) }));
    return { customer, json: JSON.stringify({ customerId: customers[customer]!, lines }) };
  });
  return { products, customers, restocked, bodies };
}
