/**
 * Topology by configuration: which process hosts which modules, and how the others are reached.
 * @example
 * const plan = planProcess(config, allModules); // throws TopologyError naming every problem
 * @module
 */
export { planProcess, TopologyError, type ProcessPlan, type RemoteProcess } from "./plan.ts";
