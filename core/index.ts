// flux2ts/core: device, tensors, dtypes, RNG, safetensors and file access. Knows nothing about models.
export { Device, DeviceLostError, grid1d, flatIndex, bucketSize, type Binding, type Resource } from "./device.ts";
export { uniforms, type PackedUniforms, type Uniforms, type UniformFields, type UniformValues } from "./uniforms.ts";
export { Tensor, numel, type Shape, type TensorSource } from "./tensor.ts";
export * from "./dtype.ts";
export { randnInto, randnRef, philoxRef, boxMullerRef, RNG_WGSL } from "./rng.ts";
export * from "./verify.ts";
export * from "./safetensors.ts";
export { openFile, readText, exists, joinPath, runtime, env, fileUrlToPath, type FileSource } from "./platform.ts";
