/**
 * sae-loupe: sparse autoencoders on WebGPU, with a CPU reference behind the same API.
 */
export { Sae, createSae, type SaeOptions, type EncodeOptions, type BackendChoice } from './runtime/sae.js';
export { loadSae, type SaeFiles, type SaeSource, type LoadSaeOptions, type LoadProgress } from './runtime/load.js';
export { SAE_FORMATS, type SaeFormatName } from './sae/loaders/plan.js';
export { readSafetensorsHeader, type RemoteHeader } from './io/range.js';
export { CACHE_NAME as SAE_CACHE_NAME } from './io/cache.js';
export type { SaeInput, Reconstruction } from './runtime/backend.js';
export { TOPK_MAX_K } from './runtime/gpu-backend.js';
export {
  resolveSaeConfig,
  ARCHITECTURES,
  type SaeConfig,
  type SaeConfigInput,
  type SaeArchitecture,
  type ActivationOrder,
  type InputNorm,
} from './sae/config.js';
export { type SparseCodes, tokenCodes } from './sae/codes.js';
export type { SaeWeights, WeightMatrix } from './sae/weights.js';
export { type WeightDtype, bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from './sae/dtype.js';
export { referenceEncode, decodeCodes, reconstructionMetrics, type ReconstructionMetrics } from './sae/reference/index.js';
export { GpuContext, type GpuContextOptions, type GpuCapabilities, type LimitsMode } from './gpu/device.js';
export { readSafetensors, parseSafetensorsHeader, type SafetensorsEntry, type SafetensorsFile, type SafetensorsTensor, type SafetensorsDtype } from './formats/safetensors.js';
export { readTorchCheckpoint, type TorchTensor } from './formats/torch.js';
export * from './errors.js';
export { RemoteSource, type RemoteSourceOptions, type GenerateRequest, type WireSteering, type SteeringStart, type SourceEvent, type ActivationFrame, type ReceivedToken } from './sources/remote.js';
export { FrameParser, activationToF32, PROTOCOL_MAJOR, type Frame, type TokenFrame, type StreamHeader, type WireDtype, type Phase } from './sources/frames.js';
export { ActivationRing } from './sources/activation-ring.js';
export { pushVector, wireSteering, sideBySide, vectorToBase64, base64ToVector, type SteeringPlan, type FeaturePush, type FeatureClamp } from './steer/plan.js';
export { ResponsePrefixDetector, RESPONSE_PREFIX } from './steer/prefix.js';
export { LocalModelSource, DEFAULT_LOCAL_MODEL, type LocalModelSourceOptions, type LocalFrame, type LocalSteering } from './sources/local.js';
export { tapAndSteer, tapAndSteerInPlace, findSite, TAP_SPARE_BYTES, type TapOptions, type TapResult, type OnnxSite, type OnnxExportFamily } from './formats/onnx/tap.js';
export { indexOnnxModel } from './formats/onnx/model.js';
export * from './session/index.js';
export {
  computeFeatureMap,
  computeFeatureMapInWorker,
  readFeatureMap,
  featureMapFile,
  featureMapBytes,
  type FeatureMapFile,
  type FeatureMapWorkerOptions,
  type FeatureMapWorker,
  type UmapOptions,
  type UmapParameters,
  type UmapProgress,
} from './features/feature-map.js';
export { loadFeatureCatalog, type FeatureCatalogOptions, type LabelSource } from './features/catalog.js';
export type { FeatureCatalog, FeatureLabel, FeatureExample, ExampleToken, ExampleQuery } from './features/types.js';
export { readFeatureLabels, fetchFeatureLabels, sniffLabelFormat, type LabelFormat } from './features/label-file.js';
export { readAutointerpCsv, readAutointerpCsvStream, readAutointerpSqlite, DEAD_LABEL } from './features/labels.js';
export { readNeuronpediaExplanations } from './features/neuronpedia.js';
export { LabelIndex } from './features/search.js';
export { ExampleDatabase, type ExampleSource, type ExampleFile } from './features/examples.js';
export { openDuckDb, type DuckDbBundle, type DuckDbEngine, type DuckDbOptions } from './features/duckdb.js';
export { checkDuckDbFile } from './features/duckdb-file.js';
export { SqliteDatabase, type SqliteValue, type SqliteTable, type SqliteColumn } from './features/sqlite.js';
export { parseCsv, CsvParser } from './features/csv.js';
