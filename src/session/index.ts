/** The Session layer: sources adapted to one token stream, the readout store, traces, the Session. */
export { Session, type SessionOptions, type OpenSessionOptions, type SaeSpec, type LoadOptions } from './session.js';
export { ReadoutStore } from './store.js';
export { selectBest } from './select.js';
export type { TokenSource, SourceToken, SourceRun, SourceInfo, TokenCodes, RingSlot } from './source.js';
export { readoutsOf, DEFAULT_MAX_BATCH, type ReadoutPipelineOptions } from './encode.js';
export { remoteTokenSource, RemoteTokenSource, type RemoteTokenSourceOptions } from './remote.js';
export { localTokenSource, LocalTokenSource, type LocalTokenSourceOptions } from './local.js';
export { TraceSource, recordTrace, saeFingerprint, type TraceInput, type TraceSourceOptions, type TraceMeta, type TraceRecordable } from './trace.js';
export {
  encodeTrace,
  checkTraceHeader,
  TraceReader,
  crc32,
  TRACE_MAGIC,
  TRACE_MAJOR,
  TRACE_MINOR,
  MAX_TRACE_HEADER_BYTES,
  MAX_TRACE_DSAE,
  MAX_TRACE_DIN,
  MAX_TRACE_CODES,
  type TraceHeader,
  type TraceEnd,
  type TraceItem,
  type TraceSaeIdentity,
} from './trace-format.js';
export { chooseBackend, chooseSaeBackend, probeSaeShape, hasWebGpu, CPU_FALLBACK_MAX_WEIGHTS, type BackendDecision, type ChooseBackendOptions, type ChooseSaeBackendOptions, type SaeShape } from './backend.js';
export type {
  TokenReadout,
  FeatureStats,
  Readouts,
  SessionStatus,
  SessionProgress,
  RunRequest,
  RunSummary,
  SessionEventMap,
  SessionLike,
  SideBySide,
  ComparingSession,
} from './types.js';
