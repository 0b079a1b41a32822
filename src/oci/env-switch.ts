/**
 * An on/off setting from the environment: true for 1, false for 0, undefined when unset or empty.
 * Throws on any other value, so a mistyped "off" is not taken as on.
 */
export function envSwitch(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const setting = env[name];
  if (setting === undefined || setting === '') return undefined;
  if (setting === '0' || setting === '1') return setting === '1';
  throw new Error(`${name} must be 0 (off) or 1 (on), not "${setting.slice(0, 40)}"`);
}
