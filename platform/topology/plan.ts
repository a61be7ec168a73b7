import type { DescService } from "@bufbuild/protobuf";
import type { PlatformConfig } from "../config/schema.ts";
import type { ModuleManifest } from "../module.ts";

/** Another process of the topology, and the services of its modules this process may call. */
export interface RemoteProcess {
  /** Its name in `topology.processes`. */
  readonly name: string;
  /** Where it is reached (`topology.processes.<name>.url`). */
  readonly url: string;
  readonly services: readonly DescService[];
}

/** What one process of a topology runs: its modules, and where every other module lives. */
export interface ProcessPlan {
  /** The process name (`--process`); undefined when every module runs in this one process. */
  readonly process: string | undefined;
  /** The modules this process hosts, in the binary's start order. */
  readonly modules: readonly ModuleManifest<any>[];
  /** The other processes that can be called (those with a `url`). */
  readonly remotes: readonly RemoteProcess[];
  /** The configuration to boot with: `modules.<name>` slices of modules hosted elsewhere left out. */
  readonly config: PlatformConfig;
}

/** A topology that cannot run; `problems` names each one (also the message, one per line). */
export class TopologyError extends Error {
  override readonly name = "TopologyError";
  constructor(readonly problems: readonly string[]) {
    super(`invalid topology:\n  - ${problems.join("\n  - ")}`);
  }
}

const list = (names: Iterable<string>) => [...names].join(", ");

/**
 * Decides what this process runs from `config.topology` and `config.process`, checking the whole
 * topology first: every module hosted exactly once, only known modules, a `url` for every process
 * whose modules another process calls, a chosen process that exists, and a bus that can carry
 * events between processes. Throws `TopologyError` naming every problem. Without a topology,
 * every module runs here.
 *
 * @example
 * const plan = planProcess(config, allModules);
 * const platform = await createPlatform({ config: plan.config, modules: plan.modules, remotes: plan.remotes });
 */
export function planProcess(config: PlatformConfig, known: readonly ModuleManifest<any>[]): ProcessPlan {
  const processes = config.topology.processes;
  const names = Object.keys(processes);
  const chosen = config.process;
  const knownNames = new Set(known.map((m) => m.name));
  const unknownModules = Object.keys(config.storage.postgres.moduleUrls)
    .filter((m) => !knownNames.has(m))
    .map((m) => `storage.postgres.moduleUrls.${m}: no such module in this binary (${list(knownNames)})`)
    .concat(Object.keys(config.bus.lingerMs).filter((m) => !knownNames.has(m)).map((m) => `bus.lingerMs.${m}: no such module in this binary (${list(knownNames)})`));
  if (names.length === 0) {
    if (unknownModules.length > 0) throw new TopologyError(unknownModules);
    if (chosen === undefined) return { process: undefined, modules: known, remotes: [], config };
    throw new TopologyError([`process "${chosen}" was chosen (--process or SELARAS_PROCESS), but the configuration describes no topology.processes to run it from: give the topology file with --config FILE`]);
  }
  const problems: string[] = [...unknownModules];
  if (chosen === undefined) problems.push(`the configuration describes a topology (processes ${list(names)}): choose the process to run with --process NAME`);
  else if (!Object.hasOwn(processes, chosen)) problems.push(`process "${chosen}" (--process) is not in topology.processes (${list(names)})`);

  const byName = new Map(known.map((m) => [m.name, m]));
  const hostOf = new Map<string, string>();
  for (const [name, entry] of Object.entries(processes)) {
    for (const m of entry.modules) {
      const other = hostOf.get(m);
      if (!byName.has(m)) problems.push(`topology.processes.${name}.modules: unknown module "${m}" (this binary has ${list(byName.keys())})`);
      else if (other === name) problems.push(`topology.processes.${name}.modules lists module ${m} twice`);
      else if (other !== undefined) problems.push(`module ${m} is hosted twice: by process ${other} and by process ${name}`);
      else hostOf.set(m, name);
    }
  }
  for (const m of known) if (!hostOf.has(m.name)) problems.push(`module ${m.name} is hosted by no process: add it to the modules of one of topology.processes`);

  // Which module implements each service, hence which process serves it.
  const implementer = new Map<string, ModuleManifest<any>>();
  for (const m of known) for (const s of m.services ?? []) implementer.set(s.typeName, m);
  const missingUrl = new Set<string>();
  for (const caller of known) {
    const from = hostOf.get(caller.name);
    for (const dep of caller.dependsOn ?? []) {
      const callee = implementer.get(dep.typeName);
      const to = callee && hostOf.get(callee.name);
      if (!callee) problems.push(`module ${caller.name} calls ${dep.typeName}, which no module of this binary implements`);
      else if (from !== undefined && to !== undefined && from !== to && processes[to]!.url === undefined && !missingUrl.has(`${to} ${dep.typeName}`)) {
        missingUrl.add(`${to} ${dep.typeName}`);
        problems.push(`process ${to} has no url, but module ${caller.name} (process ${from}) calls ${dep.typeName} of its module ${callee.name}: set topology.processes.${to}.url to the address the other processes reach it at`);
      }
    }
  }
  if (names.length > 1 && config.bus.kind === "embedded") {
    problems.push(`bus.kind is "embedded", a log inside one process's dataDir: events cannot travel between the ${names.length} processes (${list(names)}); set bus.kind = "nats"`);
  }
  for (const slice of Object.keys(config.modules)) if (!byName.has(slice)) problems.push(`modules.${slice}: no such module in this binary (${list(byName.keys())})`);
  if (problems.length > 0) throw new TopologyError([...new Set(problems)]);

  const here = chosen!;
  const remotes: RemoteProcess[] = [];
  for (const [name, entry] of Object.entries(processes)) {
    if (name === here || entry.url === undefined) continue;
    const services = entry.modules.flatMap((m) => byName.get(m)!.services ?? []);
    if (services.length > 0) remotes.push({ name, url: entry.url, services });
  }
  const modules = known.filter((m) => hostOf.get(m.name) === here);
  // A module's config slice is validated by the process that hosts it.
  const slices = Object.fromEntries(Object.entries(config.modules).filter(([m]) => hostOf.get(m) === here));
  return { process: here, modules, remotes, config: { ...config, modules: slices } };
}
