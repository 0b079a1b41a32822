export { Registry } from './registry.js';
export type { RegistryOptions, RegistryEvent, StoredManifest, PutManifestResult } from './registry.js';
export { RegistryError } from './errors.js';
export type { RegistryErrorCode } from './errors.js';
export { startRegistry } from './serve.js';
export type { RunningRegistry, StartRegistryOptions } from './serve.js';
export { loadServeConfig, parseAddr, isLoopback, ConfigError, DEFAULT_CONFIG } from './config.js';
export type { ServeConfig, LoadConfigOptions } from './config.js';
export type { GarbageCollectionOptions, GarbageCollectionReport } from './gc.js';
