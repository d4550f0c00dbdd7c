// The op profiler (SANA_PROFILE=1, `sana-graph run --profile`): every raw op call is timed and
// charged, with the FLOPs and bytes its arguments imply, to an op kind within the current
// stage (a node of the running workflow, or whatever a bench names). Speed work starts from its
// table: time by op kind, share of the stage, achieved GFLOP/s and GB/s, bytes moved.
//
// The raw ops are synchronous on the CPU backend, so wall time around the call is the op's time.
// CUDA ops are queued on a stream: there the times are launch times unless the op syncs, and the
// report says so.
import type { RawAddon, RawOps, RawStorage } from './binding.ts';

/** Bytes per element of the addon's dtype codes (native/binding.ts DTYPE_CODE order). */
const ES = [4, 2, 2, 4, 8] as const;
const es = (code: number): number => ES[code] ?? 4;
const DT = ['f32', 'bf16', 'f16', 'i32', 'i64'] as const;
const dtName = (code: number): string => DT[code] ?? `dt${code}`;
const UNARY = ['affine', 'gelu_tanh', 'silu', 'relu', 'tanh', 'clamp'];
const BINARY = ['add', 'sub', 'mul', 'div', 'glu_silu', 'glu_gelu_tanh'];
const TERNARY = ['modulate', 'addGated'];
const prod = (xs: readonly number[]): number => xs.reduce((a, b) => a * b, 1);

/** What one call costs: the op kind it is charged to, its FLOPs and the bytes it reads + writes. */
export interface OpCost {
  kind: string;
  flops: number;
  bytes: number;
}

type Args = unknown[];
const n = (a: Args, i: number): number => a[i] as number;
const arr = (a: Args, i: number): number[] => a[i] as number[];

/**
 * Cost models by raw op, from the argument order of native/cpu/ops.h (see RawOps). Bytes count
 * each operand once (a cache-friendly kernel's minimum traffic), so GB/s is a lower bound.
 */
/** conv2d and conv2dNhwc: the same arguments from position 8 (B, Cin, H, W, Cout, KH, KW, stride,
 *  pad, groups, Ho, Wo), then conv2dNhwc's act, then the out and compute dtypes. */
function convCost(op: string, a: Args, hasAct: boolean): OpCost {
  const [B, Cin, H, W, Cout, KH, KW, , , groups, Ho, Wo] = Array.from({ length: 12 }, (_, i) => n(a, 8 + i));
  const outDt = n(a, hasAct ? 21 : 20),
    dt = n(a, hasAct ? 22 : 21);
  const cg = Cin! / groups!;
  const shape = groups! > 1 && groups === Cin ? 'depthwise' : KH === 1 && KW === 1 ? '1x1' : `${KH}x${KW}`;
  return {
    kind: `${op}.${shape}.${dtName(dt)}`,
    flops: 2 * B! * Cout! * Ho! * Wo! * cg * KH! * KW!,
    bytes: (B! * Cin! * H! * W! + Cout! * cg * KH! * KW!) * es(dt) + B! * Cout! * Ho! * Wo! * es(outDt),
  };
}

const COST: Record<keyof RawOps, (a: Args) => OpCost> = {
  fill: (a) => ({ kind: 'fill', flops: 0, bytes: n(a, 2) * es(n(a, 4)) }),
  cast: (a) => ({ kind: `cast.${dtName(n(a, 6))}>${dtName(n(a, 5))}`, flops: 0, bytes: n(a, 4) * (es(n(a, 5)) + es(n(a, 6))) }),
  permute: (a) => ({ kind: 'permute', flops: 0, bytes: 2 * prod(arr(a, 4)) * n(a, 6) }),
  concat: (a) => ({ kind: 'concat', flops: 0, bytes: 2 * n(a, 4) * arr(a, 3).reduce((x, y) => x + y, 0) * n(a, 5) * n(a, 6) }),
  slice: (a) => ({ kind: 'slice', flops: 0, bytes: 2 * n(a, 4) * n(a, 8) * n(a, 6) * n(a, 9) }),
  indexSelect: (a) => ({ kind: 'indexSelect', flops: 0, bytes: 2 * n(a, 5) * arr(a, 4).length * n(a, 7) * n(a, 8) }),
  repeatInterleave: (a) => {
    const inN = n(a, 4) * n(a, 5) * n(a, 6);
    return { kind: 'repeatInterleave', flops: 0, bytes: (inN + inN * n(a, 7)) * n(a, 8) };
  },
  unary: (a) => ({ kind: `unary.${UNARY[n(a, 5)] ?? n(a, 5)}`, flops: n(a, 4), bytes: 2 * n(a, 4) * es(n(a, 8)) }),
  binary: (a) => {
    const N = prod(arr(a, 8));
    return { kind: `binary.${BINARY[n(a, 6)] ?? n(a, 6)}`, flops: N, bytes: 3 * N * es(n(a, 7)) };
  },
  ternary: (a) => {
    const N = prod(arr(a, 10));
    return { kind: `ternary.${TERNARY[n(a, 8)] ?? n(a, 8)}`, flops: 2 * N, bytes: 4 * N * es(n(a, 9)) };
  },
  softmax: (a) => ({ kind: 'softmax', flops: 5 * n(a, 4) * n(a, 5), bytes: 2 * n(a, 4) * n(a, 5) * es(n(a, 6)) }),
  linear: (a) => {
    const [M, N, K, outDt, dt] = [n(a, 8), n(a, 9), n(a, 10), n(a, 11), n(a, 12)];
    return { kind: `linear.${dtName(dt)}`, flops: 2 * M * N * K, bytes: (M * K + N * K) * es(dt) + M * N * es(outDt) };
  },
  linearResidual: (a) => {
    const [M, N, K, outDt, dt] = [n(a, 12), n(a, 13), n(a, 14), n(a, 16), n(a, 17)];
    // the GEMM, then res read and out written (+ the gate multiply and the add per output)
    return { kind: `linearResidual.${dtName(dt)}`, flops: 2 * M * N * K + 2 * M * N, bytes: (M * K + N * K) * es(dt) + 2 * M * N * es(outDt) };
  },
  matmul: (a) => {
    const [batch, M, N, K, outDt, dt] = [n(a, 6), n(a, 7), n(a, 8), n(a, 9), n(a, 13), n(a, 14)];
    return { kind: `matmul.${dtName(dt)}`, flops: 2 * batch * M * N * K, bytes: batch * ((M * K + N * K) * es(dt) + M * N * es(outDt)) };
  },
  conv2d: (a) => convCost('conv2d', a, false),
  conv2dNhwc: (a) => convCost('conv2dNhwc', a, true),
  upsamplePhasesNhwc: (a) => {
    const [B, H, W, C, Cx, dt] = [6, 7, 8, 9, 10, 11].map((i) => n(a, i)) as number[];
    const N = 4 * B! * H! * W! * C!;
    // y's used phases read, out written, the shortcut read once per pixel (and added)
    return { kind: `upsamplePhasesNhwc.${dtName(dt!)}`, flops: Cx ? N : 0, bytes: (2 * N + B! * H! * W! * Cx!) * es(dt!) };
  },
  rmsnorm: (a) => ({ kind: 'rmsnorm', flops: 4 * n(a, 8) * n(a, 9), bytes: 2 * n(a, 8) * n(a, 9) * es(n(a, 12)) }),
  rmsnormAct: (a) => {
    const [rows, C] = [10, 11].map((i) => n(a, i)) as [number, number];
    const hasRes = a[8] !== null && a[8] !== undefined;
    return { kind: 'rmsnormAct', flops: 6 * rows * C, bytes: (hasRes ? 3 : 2) * rows * C * es(n(a, 14)) };
  },
  rmsnorm2d: (a) => {
    const N = n(a, 8) * n(a, 9) * n(a, 10);
    return { kind: 'rmsnorm2d', flops: 4 * N, bytes: 2 * N * es(n(a, 12)) };
  },
  layernorm: (a) => ({ kind: 'layernorm', flops: 6 * n(a, 8) * n(a, 9), bytes: 2 * n(a, 8) * n(a, 9) * es(n(a, 11)) }),
  layernormModulate: (a) => {
    const N = n(a, 8) * n(a, 9) * n(a, 10);
    return { kind: 'layernormModulate', flops: 8 * N, bytes: 2 * N * es(n(a, 13)) };
  },
  dwconv3x3GluTokens: (a) => {
    const [B, H, W, F] = [8, 9, 10, 11].map((i) => n(a, i)) as number[];
    const T = B! * H! * W!;
    // 9 taps on 2F channels, then value · silu(gate); u read once, out written once.
    return { kind: `dwconv3x3GluTokens.${dtName(n(a, 13))}`, flops: 2 * T * 2 * F! * 9 + 4 * T * F!, bytes: (3 * T * F! + 18 * F!) * es(n(a, 13)) };
  },
  attention: (a) => {
    const [B, Hq, Hkv, Lq, Lk, D, Dv] = [10, 11, 12, 13, 14, 15, 16].map((i) => n(a, i)) as number[];
    const causal = a[22] as boolean;
    const dt = n(a, 24);
    const pairs = B! * Hq! * Lq! * Lk! * (causal ? 0.5 : 1);
    return {
      kind: `attention.${dtName(dt)}`,
      flops: 2 * pairs * (D! + Dv!),
      bytes: (B! * Hq! * Lq! * (D! + Dv!) + B! * Hkv! * Lk! * (D! + Dv!)) * es(dt),
    };
  },
  attentionTokens: (a) => {
    const [B, H, Lq, Lk, D] = [8, 9, 10, 11, 12].map((i) => n(a, i)) as number[];
    const dt = n(a, 14);
    // every key counted, also those a padding bias lets the CPU kernel skip
    return { kind: `attentionTokens.${dtName(dt)}`, flops: 4 * B! * H! * Lq! * Lk! * D!, bytes: (2 * B! * Lq! * H! * D! + 2 * B! * Lk! * H! * D!) * es(dt) };
  },
  selfAttentionRope: (a) => {
    const [B, N, Hq, Hkv, D] = [6, 7, 8, 9, 10].map((i) => n(a, i)) as number[];
    const dt = n(a, 15);
    // the causal half of QKᵀ and PV (keys a padding mask lets the CPU kernel skip still counted),
    // RoPE on q and k; qkv read once, out written once
    return {
      kind: `selfAttentionRope.${dtName(dt)}`,
      flops: 2 * B! * Hq! * N! * N! * D! + 3 * B! * N! * (Hq! + Hkv!) * D!,
      bytes: (B! * N! * (Hq! + 2 * Hkv!) * D! + B! * N! * Hq! * D!) * es(dt),
    };
  },
  linearAttention: (a) => {
    const [B, H, N, D] = [8, 9, 10, 11].map((i) => n(a, i)) as number[];
    // kᵀ[v,1] then q·(kᵀ[v,1]): two (D × (D+1)) products per token and head; f32 operands.
    return { kind: 'linearAttention', flops: 4 * B! * H! * N! * D! * (D! + 1), bytes: 4 * B! * H! * N! * D! * 4 };
  },
  linearAttentionTokens: (a) => {
    const [B, N, H, D] = [4, 5, 6, 7].map((i) => n(a, i)) as number[];
    return { kind: `linearAttentionTokens.${dtName(n(a, 10))}`, flops: 4 * B! * H! * N! * D! * (D! + 1), bytes: 4 * B! * N! * H! * D! * es(n(a, 10)) };
  },
  rope: (a) => ({ kind: 'rope', flops: 3 * n(a, 5) * n(a, 6) * n(a, 7), bytes: 2 * n(a, 5) * n(a, 6) * n(a, 7) * es(n(a, 9)) }),
  embedding: (a) => ({ kind: 'embedding', flops: 0, bytes: 2 * n(a, 6) * n(a, 8) * es(n(a, 9)) }),
  upsampleNearest: (a) => {
    const N = n(a, 4) * n(a, 5) * n(a, 6);
    return { kind: 'upsampleNearest', flops: 0, bytes: N * (1 + n(a, 7) * n(a, 7)) * n(a, 8) };
  },
  upsampleBilinear: (a) => ({
    kind: 'upsampleBilinear',
    flops: 8 * n(a, 4) * n(a, 7) * n(a, 8),
    bytes: n(a, 4) * (n(a, 5) * n(a, 6) + n(a, 7) * n(a, 8)) * es(n(a, 9)),
  }),
  pixelShuffle: (a) => ({ kind: 'pixelShuffle', flops: 0, bytes: 2 * n(a, 4) * n(a, 5) * n(a, 6) * n(a, 7) * n(a, 9) }),
};

/** The raw ops that have a cost model (a test checks every op of the addon has one). */
export const costModelOps = (): string[] => Object.keys(COST);

interface Cell {
  calls: number;
  ms: number;
  flops: number;
  bytes: number;
}

export interface ProfileRow extends Cell {
  kind: string;
  /** Share of the stage's wall time. */
  pct: number;
  gflops: number;
  gbps: number;
}
export interface ProfileStage {
  stage: string;
  /** Wall time from the stage's start to its end (or to the report). */
  wall_ms: number;
  /** Time inside native ops; the rest is JS, allocation and waiting. */
  ops_ms: number;
  flops: number;
  bytes: number;
  rows: ProfileRow[];
}

const now = (): number => performance.now();

class Profiler {
  private stages = new Map<string, { start: number; end?: number; wall: number; cells: Map<string, Cell> }>();
  private current: string | undefined;
  private installedOn: RawAddon | undefined;
  private addon: RawAddon | undefined;
  private original: RawOps | undefined;
  enabled = false;

  /** Called by native/binding.ts when the addon loads: wraps its ops now if profiling is on. */
  attach(addon: RawAddon): void {
    this.addon = addon;
    if (this.enabled) this.install(addon);
  }

  /** Turns profiling on or off (a bench or `--profile`); the wrappers stay once installed. */
  enable(on = true): void {
    this.enabled = on;
    if (on && this.addon) this.install(this.addon);
  }

  /** Starts timing every op of `addon` (idempotent). */
  private install(addon: RawAddon): void {
    if (this.installedOn === addon) return;
    this.installedOn = addon;
    this.original = addon.ops;
    const wrapped = {} as Record<string, unknown>;
    for (const [name, fn] of Object.entries(addon.ops) as Array<[keyof RawOps, (...a: unknown[]) => void]>) {
      const cost = COST[name];
      wrapped[name] = (...a: unknown[]) => {
        if (!this.enabled) return fn.apply(this.original, a);
        const t0 = now();
        try {
          return fn.apply(this.original, a);
        } finally {
          const ms = now() - t0;
          const c = cost ? cost(a) : { kind: name, flops: 0, bytes: 0 };
          this.charge(c.kind, ms, c.flops, c.bytes);
        }
      };
    }
    // Host <-> device traffic and copies count too: a layout round trip shows up as `copy`.
    const { copy, write, read } = addon;
    addon.copy = (dst: RawStorage, dO: number, src: RawStorage, sO: number, nbytes: number) => {
      if (!this.enabled) return copy.call(addon, dst, dO, src, sO, nbytes);
      const t0 = now();
      try {
        return copy.call(addon, dst, dO, src, sO, nbytes);
      } finally {
        this.charge('copy', now() - t0, 0, 2 * nbytes);
      }
    };
    addon.write = (s, off, data, sd, dd, count) => {
      if (!this.enabled) return write.call(addon, s, off, data, sd, dd, count);
      const t0 = now();
      try {
        return write.call(addon, s, off, data, sd, dd, count);
      } finally {
        this.charge('upload', now() - t0, 0, count * (es(sd) + es(dd)));
      }
    };
    addon.read = (s, off, count, sd, dd) => {
      if (!this.enabled) return read.call(addon, s, off, count, sd, dd);
      const t0 = now();
      try {
        return read.call(addon, s, off, count, sd, dd);
      } finally {
        this.charge('download', now() - t0, 0, count * (es(sd) + es(dd)));
      }
    };
    addon.ops = wrapped as unknown as RawOps;
  }

  /** Ends the current stage and opens `name` (a stage seen before accumulates). */
  stage(name: string): void {
    this.endStage();
    let s = this.stages.get(name);
    if (!s) this.stages.set(name, (s = { start: now(), wall: 0, cells: new Map() }));
    s.start = now();
    s.end = undefined;
    this.current = name;
  }

  endStage(): void {
    if (this.current === undefined) return;
    const s = this.stages.get(this.current)!;
    s.end = now();
    s.wall += s.end - s.start;
    this.current = undefined;
  }

  reset(): void {
    this.stages.clear();
    this.current = undefined;
  }

  private charge(kind: string, ms: number, flops: number, bytes: number): void {
    if (this.current === undefined) this.stage('(no stage)');
    const cells = this.stages.get(this.current!)!.cells;
    let c = cells.get(kind);
    if (!c) cells.set(kind, (c = { calls: 0, ms: 0, flops: 0, bytes: 0 }));
    c.calls++;
    c.ms += ms;
    c.flops += flops;
    c.bytes += bytes;
  }

  report(): ProfileStage[] {
    const out: ProfileStage[] = [];
    for (const [stage, s] of this.stages) {
      const wall = s.wall + (this.current === stage ? now() - s.start : 0);
      const rows: ProfileRow[] = [...s.cells].map(([kind, c]) => ({
        kind,
        ...c,
        pct: wall > 0 ? (100 * c.ms) / wall : 0,
        gflops: c.ms > 0 ? c.flops / c.ms / 1e6 : 0,
        gbps: c.ms > 0 ? c.bytes / c.ms / 1e6 : 0,
      }));
      rows.sort((x, y) => y.ms - x.ms);
      const sum = (k: 'ms' | 'flops' | 'bytes') => rows.reduce((a, r) => a + r[k], 0);
      out.push({ stage, wall_ms: wall, ops_ms: sum('ms'), flops: sum('flops'), bytes: sum('bytes'), rows });
    }
    return out;
  }
}

/** The process-wide profiler; on when SANA_PROFILE=1 (or enabled by a bench or the CLI). */
export const profiler = new Profiler();
profiler.enabled = process.env.SANA_PROFILE === '1';

const fmtBytes = (b: number): string => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${(b / 1e3).toFixed(1)} kB`);

/** The report as text tables, one per stage, for a terminal or a log. */
export function formatProfile(stages: ProfileStage[], opts: { device?: string; maxRows?: number } = {}): string {
  const lines: string[] = [];
  for (const s of stages) {
    if (s.rows.length === 0) continue;
    lines.push(
      `profile: ${s.stage} — wall ${s.wall_ms.toFixed(1)} ms, in ops ${s.ops_ms.toFixed(1)} ms (${((100 * s.ops_ms) / Math.max(s.wall_ms, 1e-9)).toFixed(0)}%), ` +
        `${(s.flops / 1e9).toFixed(2)} GFLOP, ${fmtBytes(s.bytes)} moved` +
        (opts.device && opts.device.startsWith('cuda') ? ' (CUDA: launch times unless the op syncs)' : ''),
    );
    lines.push(
      `  ${'op kind'.padEnd(28)} ${'calls'.padStart(7)} ${'ms'.padStart(10)} ${'%'.padStart(6)} ${'GFLOP/s'.padStart(9)} ${'GB/s'.padStart(8)} ${'moved'.padStart(10)}`,
    );
    const rows = s.rows.slice(0, opts.maxRows ?? 40);
    for (const r of rows) {
      lines.push(
        `  ${r.kind.padEnd(28)} ${String(r.calls).padStart(7)} ${r.ms.toFixed(2).padStart(10)} ${r.pct.toFixed(1).padStart(6)} ` +
          `${(r.flops > 0 ? r.gflops.toFixed(1) : '-').padStart(9)} ${r.gbps.toFixed(2).padStart(8)} ${fmtBytes(r.bytes).padStart(10)}`,
      );
    }
    if (s.rows.length > rows.length) lines.push(`  … ${s.rows.length - rows.length} more op kinds`);
    const other = s.wall_ms - s.ops_ms;
    lines.push(
      `  ${'(outside ops: JS, alloc, waits)'.padEnd(28)} ${''.padStart(7)} ${other.toFixed(2).padStart(10)} ${((100 * other) / Math.max(s.wall_ms, 1e-9)).toFixed(1).padStart(6)}`,
    );
  }
  return lines.join('\n');
}
