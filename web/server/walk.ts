// One directory walk for the listing routes (model files, extension scripts, userdata): entries
// depth-first in name order (stable listings), unreadable folders skipped rather than failing
// the request. Each caller keeps its own filters: hidden names, symlink rules, depth, limits.
import fs from 'node:fs';
import path from 'node:path';

/** What `visit` wants: descend into this entry (a folder), go on, or end the whole walk. */
export type WalkStep = 'descend' | 'next' | 'stop';

/** Walks `dir`; `visit(entry, fullPath, depth)` decides per entry. Returns false once stopped. */
export function walkSorted(dir: string, visit: (e: fs.Dirent, full: string, depth: number) => WalkStep, depth = 0): boolean {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return true;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const full = path.join(dir, e.name);
    const step = visit(e, full, depth);
    if (step === 'stop') return false;
    if (step === 'descend' && !walkSorted(full, visit, depth + 1)) return false;
  }
  return true;
}
