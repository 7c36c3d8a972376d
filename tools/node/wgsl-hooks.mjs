// Node module hooks: `import src from './x.wgsl?raw'` yields the file's text, as Vite does, so
// scripts run outside Vite (the benchmark) share the library's shader imports unchanged.
import { readFile } from 'node:fs/promises';

export async function load(url, context, nextLoad) {
  const u = new URL(url);
  if (u.protocol === 'file:' && u.pathname.endsWith('.wgsl') && u.search === '?raw') {
    const text = await readFile(u, 'utf8');
    return { format: 'module', source: `export default ${JSON.stringify(text)};`, shortCircuit: true };
  }
  return nextLoad(url, context);
}
