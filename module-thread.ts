/**
 * The entry of a module thread (`threads.workers`, docs/adr/0017-embedded-modules-on-worker-threads.md):
 * the platform starts it for each group of modules; it is never run by hand.
 */
import { allModules } from "./modules.ts";
import { runModuleThread } from "./platform/threads/worker.ts";

await runModuleThread(allModules);
