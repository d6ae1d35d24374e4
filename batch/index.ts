// flux2ts/batch: prompt-set runs on BullMQ + Redis for scripts — submit a batch, serve it with a worker per GPU,
// report on it. The CLI's `batch` and `worker` commands are thin front ends over these.
export { batchStatus, type BatchStatus, checkBatchName, DEFAULT_QUEUE, queueUrl, submitBatch, type SubmitOptions } from "./queue.ts";
export { batchReport, batchRows, bootstrapCi, type MethodSummary, median, type ResultRow, RESULT_COLUMNS, summarize } from "./report.ts";
export {
  type BatchDefaults, BatchInputError, type BatchModels, CSV_COLUMNS, jobId, type JobReference, jobsFromCsv, jobsFromPromptLines, type JobSpec, parseCsv, parseSeeds,
  referencePaths, withReferenceHashes,
} from "./spec.ts";
export { type JobProgress, type JobResult, runWorker, type WorkerOptions } from "./worker.ts";
