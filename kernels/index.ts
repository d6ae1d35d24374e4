// flux2ts/kernels: every WGSL kernel family. Each file holds one family's WGSL and launchers; its CPU reference
// sits beside it in <family>.ref.ts. Kernels know nothing about models.
export * from "./elementwise.ts";
export * from "./matmul.ts";
export * from "./attention.ts";
export * from "./norm.ts";
export * from "./softmax.ts";
export * from "./reduce.ts";
export * from "./conv2d.ts";
export * from "./resample.ts";
export * from "./rope.ts";
export * from "./layout.ts";
export * from "./haar.ts";
export * from "./pixels.ts";
export * from "./hash_noise.ts";
