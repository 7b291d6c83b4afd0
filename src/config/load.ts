import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { clientWarnings, ConfigError, parseCoreConfig, sourceName, type ConfigSource, type CoreConfig } from './config.ts';
import { resolveSourcePaths, SOURCE_KINDS, sourceGroups, sourceProblems, sourceWarnings, type SourceConfigs } from '../sources/registry.ts';

// The config as guestlist runs with it: the core's keys (config.ts) and the sections of the
// identity sources (sources/registry.ts), read together, so that one run reports every problem.

export type Config = CoreConfig & SourceConfigs;

type Env = Record<string, string | undefined>;

export function parseConfig(text: string, env: Env = process.env, source = 'config'): Config {
  return parseCoreConfig<SourceConfigs>(text, env, source, {
    names: SOURCE_KINDS.map((k) => k.name),
    howToAdd: SOURCE_KINDS.map((k) => k.howToAdd),
    read(raw, listen, listenKey, problems) {
      const sections: Record<string, unknown> = {};
      for (const kind of SOURCE_KINDS) {
        if (raw[kind.name] === undefined) continue;
        const section = kind.parse(raw[kind.name], problems);
        if (section !== undefined) sections[kind.name] = section;
      }
      if (listen) problems.push(...sourceProblems({ ...sections, listen }, listenKey));
      return sections as SourceConfigs;
    },
    groups: sourceGroups,
  });
}

/** What `check` and the start say of a valid config: the sources' warnings, then the clients'. */
export function configWarnings(config: Config): string[] {
  return [...sourceWarnings(config), ...clientWarnings(config.clients)];
}

/**
 * The one loader, for every command and either source: parse and validate, resolve relative
 * paths, then check what only the filesystem can tell, so that `check` refuses whatever `serve`
 * would fail on. Relative paths mean relative to the config file, not to wherever the process was
 * started (`npm start` always runs in the project directory); for YAML with no file, relative to
 * the working directory.
 */
export async function loadConfig(source: ConfigSource, env: Env = process.env): Promise<Config> {
  const name = sourceName(source);
  let text: string;
  if ('file' in source) {
    try {
      text = await readFile(source.file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file (mount your config there, pass --config FILE, or put the YAML itself in GUESTLIST_CONFIG_YAML)'
        : code === 'EACCES' ? 'permission denied' : String((err as Error).message);
      throw new ConfigError(name, [`cannot read the config file: ${why}`]);
    }
  } else {
    text = source.yaml;
  }
  const config = parseConfig(text, env, name);
  const base = 'file' in source ? dirname(resolve(source.file)) : process.cwd();
  const near = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const resolved: Config = {
    ...config,
    data_dir: near(config.data_dir),
    ...resolveSourcePaths(config, near),
    branding: { ...config.branding, ...(config.branding.stylesheet ? { stylesheet: near(config.branding.stylesheet) } : {}) },
  };
  if (resolved.branding.stylesheet) {
    try {
      await readFile(resolved.branding.stylesheet);
    } catch (err) {
      throw new ConfigError(name, [`branding.stylesheet: cannot read ${resolved.branding.stylesheet}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
    }
  }
  return resolved;
}

/** loadConfig for a file. */
export function loadConfigFile(file: string, env: Env = process.env): Promise<Config> {
  return loadConfig({ file }, env);
}

