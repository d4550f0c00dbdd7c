// ComfyUI's output naming: "<prefix>_<counter:05d>_.png", where the prefix may name subfolders
// ("a/b/name") and carry tokens: %date:yyyy-MM-dd%, %year% %month% %day% %hour% %minute%
// %second%, %width% %height%, %batch_num%. The counter continues after the highest number already
// used by that prefix in that folder.
import fs from 'node:fs';
import path from 'node:path';
import { relativeSegments } from './paths.ts';

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** Formats a date with the frontend's tokens: yyyy yy MM M dd d hh HH h mm m ss s. */
export function formatDate(pattern: string, d: Date): string {
  const values: Record<string, string> = {
    yyyy: String(d.getFullYear()),
    yy: pad(d.getFullYear() % 100),
    MM: pad(d.getMonth() + 1),
    M: String(d.getMonth() + 1),
    dd: pad(d.getDate()),
    d: String(d.getDate()),
    hh: pad(d.getHours()),
    HH: pad(d.getHours()),
    h: String(d.getHours()),
    mm: pad(d.getMinutes()),
    m: String(d.getMinutes()),
    ss: pad(d.getSeconds()),
    s: String(d.getSeconds()),
  };
  return pattern.replace(/yyyy|yy|MM|M|dd|d|hh|HH|h|mm|m|ss|s/g, (t) => values[t]);
}

export function expandPrefix(prefix: string, vars: { width: number; height: number; date?: Date }): string {
  const d = vars.date ?? new Date();
  return prefix
    .replace(/%date:([^%]+)%/g, (_m, f: string) => formatDate(f, d))
    .replace(/%year%/g, String(d.getFullYear()))
    .replace(/%month%/g, pad(d.getMonth() + 1))
    .replace(/%day%/g, pad(d.getDate()))
    .replace(/%hour%/g, pad(d.getHours()))
    .replace(/%minute%/g, pad(d.getMinutes()))
    .replace(/%second%/g, pad(d.getSeconds()))
    .replace(/%width%/g, String(vars.width))
    .replace(/%height%/g, String(vars.height));
}

/** Longest filename_prefix accepted: with "_00001_.png" and token growth a name stays under 255 bytes. */
export const MAX_PREFIX_LENGTH = 200;

/**
 * Why a filename_prefix cannot name a file inside the output folder, or undefined when it can:
 * checked at submit time (SaveImage's validateInputs) with the same rules `planSave` applies at
 * run time, on a sample expansion of its tokens (a %date:..% format could produce "..").
 */
export function filenamePrefixProblem(prefix: string): string | undefined {
  if (prefix.trim() === '') return 'is empty';
  if (prefix.length > MAX_PREFIX_LENGTH) return `is ${prefix.length} characters long (at most ${MAX_PREFIX_LENGTH})`;
  const expanded = expandPrefix(prefix, { width: 16384, height: 16384, date: new Date(2000, 0, 1) });
  let segments: string[];
  try {
    segments = relativeSegments(expanded);
  } catch (e) {
    return (e as Error).message;
  }
  if (segments.length === 0) return 'names no file';
  const long = segments.find((seg) => Buffer.byteLength(seg) > MAX_PREFIX_LENGTH);
  if (long !== undefined) return `has a path segment of ${Buffer.byteLength(long)} bytes (at most ${MAX_PREFIX_LENGTH})`;
  return undefined;
}

export interface SavePlan {
  /** Folder relative to the root, "/"-separated ("" for the root itself). */
  subfolder: string;
  /** Base name, may still contain %batch_num%. */
  name: string;
  /** First free counter. */
  counter: number;
}

/** Splits an expanded prefix into subfolder and name and finds the next counter in `root`. */
export function planSave(root: string, expandedPrefix: string): SavePlan {
  const segments = relativeSegments(expandedPrefix);
  if (segments.length === 0) throw new Error(`filename_prefix ${JSON.stringify(expandedPrefix)} names no file`);
  const name = segments[segments.length - 1];
  const subfolder = segments.slice(0, -1).join('/');
  const dir = path.join(root, ...segments.slice(0, -1));
  let counter = 1;
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  // The batch-number token may sit anywhere in the name: it matches any digits when counting.
  const stem = name.replace(/%batch_num%/g, '\u0000');
  const pattern = new RegExp('^' + stem.split('\u0000').map(escapeRegExp).join('\\d+') + '_(\\d{5,})_\\.[A-Za-z0-9]+$');
  for (const entry of entries) {
    const m = pattern.exec(entry);
    if (m) counter = Math.max(counter, Number(m[1]) + 1);
  }
  return { subfolder, name, counter };
}

export function fileNameFor(plan: SavePlan, batchIndex: number, counter: number, ext = 'png'): string {
  return `${plan.name.replace(/%batch_num%/g, String(batchIndex))}_${String(counter).padStart(5, '0')}_.${ext}`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
