// IS_CHANGED for loader nodes: the model files' sizes and modification times, so replacing the
// weights on disk re-runs the loader (and everything after it) instead of serving stale outputs.
import fs from 'node:fs';
import path from 'node:path';

export function folderFingerprint(...dirs: string[]): string {
  const parts: string[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      parts.push(`${dir}:missing`);
      continue;
    }
    for (const n of names) {
      if (!n.endsWith('.json') && !n.endsWith('.safetensors')) continue;
      const st = fs.statSync(path.join(dir, n));
      parts.push(`${n}:${st.size}:${st.mtimeMs}`);
    }
  }
  return parts.join('|');
}
