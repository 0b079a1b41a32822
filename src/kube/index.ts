export { KubeClient, splitApiVersion } from './client.js';
export type { KubeClientOptions, KubeRequestOptions, ApplyOptions } from './client.js';
export { loadKubeConfig, listContexts } from './config.js';
export type { KubeConnection, LoadKubeConfigOptions } from './config.js';
export { KubeError, isStatus } from './errors.js';
export type { KubeErrorCode, KubeErrorOptions } from './errors.js';
export type { KubeObject, KubeList, ObjectMeta, ResourceInfo, WatchEvent } from './types.js';
