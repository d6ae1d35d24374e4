// pack/build.ts's import scanner: what it rewrites in emitted declarations and what its dist check finds.
import { expect, test } from "bun:test";
import { declarationImportsToJs, relativeImports } from "../../pack/build.ts";

const DTS = `import type { Tensor } from "../core/index.ts";
export * from './matmul.ts';
export { x } from "./x.js";
import "./side_effect.ts";
declare const t: import("../core/tensor.ts").Tensor;
import { create } from "webgpu";
import data from "./table.json";
export declare function f(): Promise<typeof import("node:fs/promises")>;
`;

test("relative .ts imports in declarations become .js; packages, node: and other files are left alone", () => {
  expect(relativeImports(DTS)).toEqual(["../core/index.ts", "./matmul.ts", "./x.js", "./side_effect.ts", "../core/tensor.ts", "./table.json"]);
  const js = declarationImportsToJs(DTS);
  expect(relativeImports(js)).toEqual(["../core/index.js", "./matmul.js", "./x.js", "./side_effect.js", "../core/tensor.js", "./table.json"]);
  expect(js).toContain(`export * from './matmul.js';`);
  expect(js).toContain(`from "webgpu"`);
  expect(js).toContain(`import("node:fs/promises")`);
});
