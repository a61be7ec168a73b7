import * as z from "zod";

/** The inventory module's config slice (`modules.inventory` in the config file). */
export const InventoryConfig = z.strictObject({
  snapshotEvery: z
    .int()
    .min(0)
    .max(1_000_000)
    .default(20)
    .describe("A product's stream is snapshotted every this many events, so loading it reads the snapshot and the events after it (0: never)."),
});
export type InventoryConfig = z.output<typeof InventoryConfig>;
