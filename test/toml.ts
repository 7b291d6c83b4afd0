// A reader for the fly.toml files the deploy tests check.

/** Enough TOML for fly.toml: tables, arrays of tables, strings, numbers, booleans, string arrays. */
export function parseToml(text: string): Record<string, any> {
  const doc: Record<string, any> = {};
  let table: Record<string, any> = doc;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\s+#.*$/, '').trim();
    if (!line || line.startsWith('#')) continue;
    const header = /^(\[\[?)([\w.]+)\]\]?$/.exec(line);
    if (header) {
      const path = header[2]!.split('.');
      let parent = doc;
      for (const key of path.slice(0, -1)) parent = Array.isArray(parent[key]) ? parent[key].at(-1) : (parent[key] ??= {});
      const last = path.at(-1)!;
      if (header[1] === '[[') (parent[last] ??= []).push((table = {}));
      else table = parent[last] ??= {};
      continue;
    }
    const kv = /^([\w-]+)\s*=\s*(.+)$/.exec(line);
    if (!kv) throw new Error(`fly.toml: cannot read "${line}"`);
    table[kv[1]!] = JSON.parse(kv[2]!.replace(/'/g, '"'));
  }
  return doc;
}
