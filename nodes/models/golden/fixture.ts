// Pure-TS reader for the golden fixture files (shared/fixtures/golden): every tensor there is F32
// and the files are small, so they are read whole without the native addon. That keeps the
// noise and scheduler stages (and their tests) independent of the addon build.
import { readFileSync } from 'node:fs';

export interface FixtureTensor {
  shape: number[];
  data: Float32Array;
}

export interface FixtureFile {
  path: string;
  metadata: Record<string, string>;
  tensors: Map<string, FixtureTensor>;
  get(name: string): FixtureTensor;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export function readFixture(path: string): FixtureFile {
  const buf = readFileSync(path);
  if (buf.length < 8) throw new Error(`fixture ${path}: file shorter than the 8-byte header length`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (8 + headerLen > buf.length) throw new Error(`fixture ${path}: header length ${headerLen} exceeds file size ${buf.length}`);
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, HeaderEntry | Record<string, string>>;
  const dataStart = 8 + headerLen;
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const tensors = new Map<string, FixtureTensor>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = raw as HeaderEntry;
    if (e.dtype !== 'F32') throw new Error(`fixture ${path}: tensor ${name} has dtype ${e.dtype}, only F32 is expected in golden fixtures`);
    const [b, end] = e.data_offsets;
    const numel = e.shape.reduce((a, d) => a * d, 1);
    if (end - b !== numel * 4 || dataStart + end > buf.length) {
      throw new Error(`fixture ${path}: tensor ${name} offsets [${b}, ${end}] do not fit shape [${e.shape}] / file size`);
    }
    // Copy into an aligned buffer: the data section may start at any byte offset.
    const data = new Float32Array(numel);
    new Uint8Array(data.buffer).set(buf.subarray(dataStart + b, dataStart + end));
    tensors.set(name, { shape: e.shape, data });
  }
  return {
    path,
    metadata,
    tensors,
    get(name: string): FixtureTensor {
      const t = tensors.get(name);
      if (!t) throw new Error(`fixture ${path}: no tensor named ${name} (has ${[...tensors.keys()].join(', ')})`);
      return t;
    },
  };
}
