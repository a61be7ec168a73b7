import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { InventoryService, StockSchema, type Stock as StockMsg } from "../../gen/inventory/v1/inventory_pb.ts";
import type { ModuleStorage } from "../../platform/module.ts";
import { parseOrThrow } from "../../platform/validate.ts";
import type { StockRow } from "./db/store.ts";
import { GetStockInput, RestockInput } from "./commands/inputs.ts";
import type { Restock } from "./commands/restock.ts";
import { getStock, listStock } from "./queries/get-stock.ts";

/** Domain stock -> proto. */
export function toProto(s: StockRow): StockMsg {
  return create(StockSchema, { productId: s.productId, available: BigInt(s.available), reserved: BigInt(s.reserved), restocked: BigInt(s.restocked), version: BigInt(s.version) });
}

/** The Connect implementation of inventory.v1.InventoryService: proto in, command/query, proto out. */
export function inventoryRpc(storage: ModuleStorage, restock: Restock): ServiceImpl<typeof InventoryService> {
  return {
    async restock(req) {
      // bigint -> number: anything past 2^53 is far past the 1e9 limit, which then names the field.
      const input = parseOrThrow(RestockInput, { productId: req.productId, quantity: Number(req.quantity) });
      return { stock: toProto(await restock(input)) };
    },
    async getStock(req) {
      const { productId } = parseOrThrow(GetStockInput, { productId: req.productId });
      return { stock: toProto(await getStock(storage, productId)) };
    },
    async listStock() {
      return { stocks: (await listStock(storage)).map(toProto) };
    },
  };
}
