// Resolution of user-supplied relative paths (filenames, subfolders, prefixes) inside a root
// folder, such that nothing can point outside it: no "..", no absolute paths, no NUL bytes, no
// backslashes (a Windows separator that POSIX would keep inside a name), and no symlink whose
// target lies outside the root. Used by /view, /upload/image, SaveImage and LoadImage.
import fs from 'node:fs';
import path from 'node:path';

export class UnsafePathError extends Error {
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`unsafe path ${JSON.stringify(input)}: ${reason}`);
    this.name = 'UnsafePathError';
  }
}

/** Checks one relative path ("a/b/c.png", "" allowed) and returns its segments. */
export function relativeSegments(rel: string): string[] {
  if (rel.includes('\0')) throw new UnsafePathError(rel, 'contains a NUL byte');
  if (rel.includes('\\')) throw new UnsafePathError(rel, 'contains a backslash');
  if (rel.startsWith('/')) throw new UnsafePathError(rel, 'is absolute');
  const segments = rel.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.some((s) => s === '..')) throw new UnsafePathError(rel, 'contains ".."');
  return segments;
}

/** The real path of `p`, or of its deepest existing ancestor joined with the missing rest. */
function realpathOfExistingPrefix(p: string): string {
  let current = p;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync(current), ...rest.reverse());
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      const parent = path.dirname(current);
      if (parent === current) return path.join(current, ...rest.reverse());
      rest.push(path.basename(current));
      current = parent;
    }
  }
}

/**
 * Absolute path of `parts` (relative paths, joined) inside `root`. Throws UnsafePathError when a
 * part is hostile or the result (following symlinks that exist) is not strictly inside root
 * (root itself is allowed only when `allowRoot`).
 */
export function resolveInside(root: string, parts: string[], allowRoot = false): string {
  const segments = parts.flatMap(relativeSegments);
  const rootAbs = path.resolve(root);
  const target = path.join(rootAbs, ...segments);
  const realRoot = realpathOfExistingPrefix(rootAbs);
  const realTarget = realpathOfExistingPrefix(target);
  const inside = realTarget.startsWith(realRoot + path.sep) || (allowRoot && realTarget === realRoot);
  if (!inside) throw new UnsafePathError(parts.join('/'), 'resolves outside its folder');
  return target;
}

/** Writes `data` to `dest` through a temporary file and a rename, so no partial file is ever visible. */
export function writeFileAtomic(dest: string, data: Uint8Array | string): void {
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  fs.writeFileSync(tmp, data);
  try {
    fs.renameSync(tmp, dest);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Like writeFileAtomic but never replaces an existing file: returns false when `dest` exists.
 * (link() is atomic and fails with EEXIST, unlike rename().)
 */
export function createFileAtomic(dest: string, data: Uint8Array): boolean {
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  fs.writeFileSync(tmp, data);
  try {
    fs.linkSync(tmp, dest);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}
