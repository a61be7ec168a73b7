import type { ModuleManifest } from "./module.ts";

/**
 * Checks that a set of modules can run together: unique names, each service implemented once,
 * every service a module depends on implemented by some module here or served by another process
 * (`remoteServices`, type names). Fails with one message naming every problem.
 */
export function validateTopology(modules: readonly ModuleManifest<any>[], remoteServices: readonly string[] = []): void {
  const problems: string[] = [];
  const names = new Set<string>();
  const served = new Map<string, string>();
  for (const m of modules) {
    if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(m.name)) problems.push(`module name "${m.name}" must be kebab-case`);
    if (names.has(m.name)) problems.push(`module ${m.name} is hosted twice`);
    names.add(m.name);
    for (const s of m.services ?? []) {
      const other = served.get(s.typeName);
      if (other) problems.push(`service ${s.typeName} is implemented by both ${other} and ${m.name}`);
      served.set(s.typeName, m.name);
    }
  }
  for (const m of modules) {
    for (const d of m.dependsOn ?? []) {
      if (!served.has(d.typeName) && !remoteServices.includes(d.typeName)) problems.push(`module ${m.name} calls ${d.typeName}, which no hosted module implements and no other process serves`);
    }
  }
  if (problems.length > 0) throw new Error(`invalid topology:\n  - ${problems.join("\n  - ")}`);
}

/** Validates each module's config slice with the module's own schema; errors name `modules.<name>.<key>`. */
export function validateModuleConfig(modules: readonly ModuleManifest<any>[], slices: Record<string, unknown>): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const problems: string[] = [];
  const known = new Set(modules.map((m) => m.name));
  for (const key of Object.keys(slices)) if (!known.has(key)) problems.push(`modules.${key}: no such module is hosted here`);
  for (const m of modules) {
    const raw = slices[m.name] ?? {};
    if (!m.config) {
      out.set(m.name, raw);
      continue;
    }
    const r = m.config.safeParse(raw);
    if (r.success) out.set(m.name, r.data);
    else for (const i of r.error.issues) problems.push(`modules.${m.name}.${i.path.join(".") || "(slice)"}: ${i.message}`);
  }
  if (problems.length > 0) throw new Error(`invalid module configuration:\n  - ${problems.join("\n  - ")}`);
  return out;
}
