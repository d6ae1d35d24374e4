// Weights: a weight asked for twice at once is uploaded once (both callers get the same tensor), and a `dispose`
// during an upload leaves nothing behind.
import { describe, expect, test } from "bun:test";
import { joinPath } from "../../core/index.ts";
import { Weights } from "../../models/weights.ts";
import { FIXTURES, testDevice } from "../util.ts";

const TRANSFORMER = joinPath(FIXTURES, "repos/black-forest-labs/FLUX.2-klein-tiny/transformer");

describe("weights", () => {
  test("two concurrent gets of one name upload it once", async () => {
    const dev = await testDevice();
    const w = await Weights.open(dev, TRANSFORMER);
    const name = "x_embedder.weight";
    const before = dev.allocatedBytes;
    const [a, b] = await Promise.all([w.get(name), w.get(name)]);
    expect(a).toBe(b);
    expect(dev.allocatedBytes - before).toBe(a.bytes);
    expect(await w.get(name)).toBe(a);
    expect(w.gpuBytes).toBe(a.bytes);
    w.dispose();
    expect(dev.allocatedBytes).toBe(before);
  });

  test("dispose during an upload: the upload is freed and its callers told", async () => {
    const dev = await testDevice();
    const w = await Weights.open(dev, TRANSFORMER);
    const before = dev.allocatedBytes;
    const pending = w.get("x_embedder.weight");
    w.dispose();
    await expect(pending).rejects.toThrow(/x_embedder\.weight" was disposed while it uploaded/);
    expect(dev.allocatedBytes).toBe(before);
  });
});
