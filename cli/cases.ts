// Every module that registers reference-case runners (core/verify.ts registerCase), imported for its side effect.
// The one list to extend when a model gains a runner.
import "../search/verify.ts";
import "../models/flux2/verify.ts";
import "../models/qwen3/verify.ts";
import "../models/clip/verify.ts";
