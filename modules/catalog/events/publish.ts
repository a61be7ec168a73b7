import type { Tx } from "../../../platform/module.ts";
import { ProductCreatedSchema, ProductUpdatedSchema } from "../../../gen/catalog/v1/events_pb.ts";
import type { Product } from "../domain/product.ts";

/** Writes ProductCreated to the outbox, in the caller's transaction. */
export function productCreated(tx: Tx, p: Product): void {
  tx.publish(ProductCreatedSchema, p.id, { productId: p.id, sku: p.sku, name: p.name, priceCents: BigInt(p.priceCents) });
}

/** Writes ProductUpdated to the outbox, in the caller's transaction. */
export function productUpdated(tx: Tx, p: Product): void {
  tx.publish(ProductUpdatedSchema, p.id, { productId: p.id, sku: p.sku, name: p.name, priceCents: BigInt(p.priceCents), version: BigInt(p.version) });
}
