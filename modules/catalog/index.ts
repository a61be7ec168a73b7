import { CatalogService } from "../../gen/catalog/v1/catalog_pb.ts";
import { ProductCreatedSchema, ProductUpdatedSchema } from "../../gen/catalog/v1/events_pb.ts";
import { migrations } from "../../gen/migrations/catalog.ts";
import { defineModule, service } from "../../platform/module.ts";
import { catalogRoutes } from "./rest.ts";
import { catalogRpc } from "./rpc.ts";

/**
 * catalog — products and prices.
 * Serves `catalog.v1.CatalogService` (orders prices lines through `GetProducts`) and the
 * `/api/v1/products` routes; publishes ProductCreated and ProductUpdated.
 */
export default defineModule({
  name: "catalog",
  migrations,
  services: [CatalogService],
  publishes: [ProductCreatedSchema, ProductUpdatedSchema],
  start: ({ storage }) => ({
    services: [service(CatalogService, catalogRpc(storage))],
    routes: catalogRoutes(storage),
  }),
});
