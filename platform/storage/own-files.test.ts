import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDataDir } from "../../test/support/platform.ts";
import { FilesInUse, ownFiles } from "./sqlite.ts";

// Another process is the e2e test's part (test/e2e/startup.e2e.test.ts); here the second owner is
// another owner in this process, which SQLite refuses just the same — on either driver.
describe("ownFiles", () => {
  let dir: string;
  const releases: Array<() => void> = [];
  beforeEach(() => {
    dir = tempDataDir();
  });
  afterEach(() => {
    for (const r of releases.splice(0)) r();
    rmSync(dir, { recursive: true, force: true });
  });

  it("gives each file one owner, names every file already owned and takes none of a refused set, until released", async () => {
    const [a, b, c] = ["a.db", "b.db", "c.db"].map((f) => join(dir, f));
    const release = await ownFiles([a!, b!]);
    releases.push(release);
    const refused = await ownFiles([c!, b!, a!]).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(FilesInUse);
    expect((refused as FilesInUse).files).toEqual([b, a]);
    expect((refused as Error).message).toContain(`${b}, ${a} are in use by another process`);
    // c was free, but the refused call let it go again.
    releases.push(await ownFiles([c!]));
    release();
    releases.push(await ownFiles([a!, b!]));
  });
});
