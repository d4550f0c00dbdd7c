// Float64 reference implementations of the Backend ops: plain loops over row-major
// Float64Arrays, written for clarity, not speed. Shapes follow native/api.ts.
export type Arr = Float64Array;

export const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
export const strides = (s: readonly number[]): number[] => {
  const st = new Array<number>(s.length);
  let acc = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
};
/** Multi-index of flat position i in shape s. */
export const unravel = (i: number, s: readonly number[]): number[] => {
  const idx = new Array<number>(s.length);
  for (let d = s.length - 1; d >= 0; d--) {
    idx[d] = i % s[d];
    i = Math.floor(i / s[d]);
  }
  return idx;
};

/** Reads b (shape bs) broadcast to shape `to` at multi-index idx (numpy rules). */
export function bcastAt(b: Arr, bs: readonly number[], to: readonly number[], idx: number[]): number {
  const off = to.length - bs.length;
  const st = strides(bs);
  let p = 0;
  for (let d = 0; d < bs.length; d++) p += (bs[d] === 1 ? 0 : idx[d + off]) * st[d];
  return b[p];
}

export const geluTanh = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
export const silu = (x: number): number => x / (1 + Math.exp(-x));

export function map(a: Arr, f: (x: number) => number): Arr {
  return a.map(f);
}

export function binary(a: Arr, as: number[], b: Arr, bs: number[], f: (x: number, y: number) => number): Arr {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f(a[i], bcastAt(b, bs, as, unravel(i, as)));
  return out;
}
export function ternary(a: Arr, as: number[], b: Arr, bs: number[], c: Arr, cs: number[], f: (x: number, y: number, z: number) => number): Arr {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const idx = unravel(i, as);
    out[i] = f(a[i], bcastAt(b, bs, as, idx), bcastAt(c, cs, as, idx));
  }
  return out;
}

export function permute(x: Arr, s: number[], perm: number[]): Arr {
  const os = perm.map((p) => s[p]);
  const st = strides(s);
  const out = new Float64Array(x.length);
  for (let i = 0; i < out.length; i++) {
    const idx = unravel(i, os);
    let p = 0;
    for (let d = 0; d < idx.length; d++) p += idx[d] * st[perm[d]];
    out[i] = x[p];
  }
  return out;
}

/** Gathers rows `rows` of axis `axis` (covers slice, indexSelect, repeatInterleave, concat). */
export function gather(x: Arr, s: number[], axis: number, rows: number[]): Arr {
  const outer = numel(s.slice(0, axis)),
    inner = numel(s.slice(axis + 1)),
    n = s[axis];
  const out = new Float64Array(outer * rows.length * inner);
  for (let o = 0; o < outer; o++)
    for (let r = 0; r < rows.length; r++) for (let i = 0; i < inner; i++) out[(o * rows.length + r) * inner + i] = x[(o * n + rows[r]) * inner + i];
  return out;
}
export function concat(xs: Arr[], shapes: number[][], axis: number): Arr {
  const outer = numel(shapes[0].slice(0, axis)),
    inner = numel(shapes[0].slice(axis + 1));
  const total = shapes.reduce((a, s) => a + s[axis], 0);
  const out = new Float64Array(outer * total * inner);
  for (let o = 0; o < outer; o++) {
    let start = 0;
    xs.forEach((x, k) => {
      const n = shapes[k][axis];
      for (let r = 0; r < n * inner; r++) out[(o * total + start) * inner + r] = x[o * n * inner + r];
      start += n;
    });
  }
  return out;
}

export function softmax(x: Arr, C: number): Arr {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    let m = -Infinity;
    for (let j = 0; j < C; j++) m = Math.max(m, x[r * C + j]);
    let s = 0;
    for (let j = 0; j < C; j++) s += Math.exp(x[r * C + j] - m);
    for (let j = 0; j < C; j++) out[r * C + j] = Math.exp(x[r * C + j] - m) / s;
  }
  return out;
}

/** x (M, K) · w (N, K)ᵀ + bias. */
export function linear(x: Arr, w: Arr, bias: Arr | undefined, M: number, N: number, K: number): Arr {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      out[m * N + n] = s;
    }
  return out;
}
/** res + gate ⊙ (x (M, K) · w (N, K)ᵀ + bias); gate row m / gateRows, or none. */
export function linearResidual(x: Arr, w: Arr, bias: Arr | undefined, res: Arr, gate: Arr | undefined, gateRows: number, M: number, N: number, K: number): Arr {
  const y = linear(x, w, bias, M, N, K);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) y[m * N + n] = res[m * N + n] + (gate ? gate[Math.floor(m / gateRows) * N + n] : 1) * y[m * N + n];
  return y;
}
/** a (batch?, M, K) · b (batch?, K, N | N, K); a batch of 1 broadcasts. */
export function matmul(a: Arr, b: Arr, batch: number, aBatched: boolean, bBatched: boolean, M: number, N: number, K: number, transB: boolean): Arr {
  const out = new Float64Array(batch * M * N);
  for (let i = 0; i < batch; i++) {
    const ao = aBatched ? i * M * K : 0,
      bo = bBatched ? i * K * N : 0;
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[ao + m * K + k] * (transB ? b[bo + n * K + k] : b[bo + k * N + n]);
        out[(i * M + m) * N + n] = s;
      }
  }
  return out;
}
export function conv2d(
  x: Arr,
  xs: number[],
  w: Arr,
  ws: number[],
  bias: Arr | undefined,
  stride: number,
  pad: number,
  groups: number,
): { out: Arr; shape: number[] } {
  const [B, Cin, H, W] = xs,
    [Cout, Cg, KH, KW] = ws;
  const Ho = Math.floor((H + 2 * pad - KH) / stride) + 1,
    Wo = Math.floor((W + 2 * pad - KW) / stride) + 1;
  const out = new Float64Array(B * Cout * Ho * Wo);
  const Coutg = Cout / groups;
  for (let b = 0; b < B; b++)
    for (let co = 0; co < Cout; co++) {
      const g = Math.floor(co / Coutg);
      for (let oh = 0; oh < Ho; oh++)
        for (let ow = 0; ow < Wo; ow++) {
          let s = bias ? bias[co] : 0;
          for (let c = 0; c < Cg; c++)
            for (let kh = 0; kh < KH; kh++)
              for (let kw = 0; kw < KW; kw++) {
                const ih = oh * stride - pad + kh,
                  iw = ow * stride - pad + kw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += x[((b * Cin + g * Cg + c) * H + ih) * W + iw] * w[((co * Cg + c) * KH + kh) * KW + kw];
              }
          out[((b * Cout + co) * Ho + oh) * Wo + ow] = s;
        }
    }
  return { out, shape: [B, Cout, Ho, Wo] };
}

/** conv2d on channels-last x (B, H, W, Cin) -> (B, Ho, Wo, Cout), then `act`. */
export function conv2dNhwc(
  x: Arr,
  xs: number[],
  w: Arr,
  ws: number[],
  bias: Arr | undefined,
  stride: number,
  pad: number,
  groups: number,
  act: 'none' | 'silu' | 'relu',
): { out: Arr; shape: number[] } {
  const [B, H, W, Cin] = xs;
  const xn = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let q = 0; q < W; q++) for (let c = 0; c < Cin; c++) xn[((b * Cin + c) * H + h) * W + q] = x[((b * H + h) * W + q) * Cin + c];
  const r = conv2d(xn, [B, Cin, H, W], w, ws, bias, stride, pad, groups);
  const [, Cout, Ho, Wo] = r.shape;
  const out = new Float64Array(r.out.length);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < Cout; c++)
      for (let h = 0; h < Ho; h++)
        for (let q = 0; q < Wo; q++) {
          const v = r.out[((b * Cout + c) * Ho + h) * Wo + q];
          out[((b * Ho + h) * Wo + q) * Cout + c] = act === 'silu' ? v / (1 + Math.exp(-v)) : act === 'relu' ? Math.max(v, 0) : v;
        }
  return { out, shape: [B, Ho, Wo, Cout] };
}

// The norms take (x, dims, w, bias, eps, ...) like the Backend ops they check.
export function rmsnorm(x: Arr, C: number, w: Arr | undefined, bias: Arr | undefined, eps: number, offset: number): Arr {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    let ss = 0;
    for (let j = 0; j < C; j++) ss += x[r * C + j] ** 2;
    const inv = 1 / Math.sqrt(ss / C + eps);
    for (let j = 0; j < C; j++) out[r * C + j] = x[r * C + j] * inv * (w ? w[j] + offset : 1) + (bias ? bias[j] : 0);
  }
  return out;
}
export function rmsnorm2d(x: Arr, [B, C, H, W]: number[], w: Arr | undefined, bias: Arr | undefined, eps: number): Arr {
  const out = new Float64Array(x.length),
    HW = H * W;
  for (let b = 0; b < B; b++)
    for (let p = 0; p < HW; p++) {
      let ss = 0;
      for (let c = 0; c < C; c++) ss += x[(b * C + c) * HW + p] ** 2;
      const inv = 1 / Math.sqrt(ss / C + eps);
      for (let c = 0; c < C; c++) out[(b * C + c) * HW + p] = x[(b * C + c) * HW + p] * inv * (w ? w[c] : 1) + (bias ? bias[c] : 0);
    }
  return out;
}
export function layernorm(x: Arr, C: number, w: Arr | undefined, bias: Arr | undefined, eps: number): Arr {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    let mean = 0;
    for (let j = 0; j < C; j++) mean += x[r * C + j];
    mean /= C;
    let v = 0;
    for (let j = 0; j < C; j++) v += (x[r * C + j] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / C + eps);
    for (let j = 0; j < C; j++) out[r * C + j] = (x[r * C + j] - mean) * inv * (w ? w[j] : 1) + (bias ? bias[j] : 0);
  }
  return out;
}

/** adaLN: layernorm (no affine) of x (B, R, C), then · (1 + scale[b]) + shift[b]; shift/scale (B, C),
 *  or (C) when `perBatch` is false. */
export function layernormModulate(x: Arr, B: number, C: number, shift: Arr, scale: Arr, perBatch: boolean, eps: number): Arr {
  const n = layernorm(x, C, undefined, undefined, eps);
  const R = x.length / C / B;
  for (let r = 0; r < B * R; r++) {
    const m = perBatch ? Math.floor(r / R) * C : 0;
    for (let j = 0; j < C; j++) n[r * C + j] = n[r * C + j] * (1 + scale[m + j]) + shift[m + j];
  }
  return n;
}

/** GLUMBConv's depthwise 3×3 + GLU on tokens: u (B, H·W, 2F), w (2F, 1, 3, 3), bias (2F) ->
 *  (B, H·W, F) = d[:F] · silu(d[F:]), d = 3×3 depthwise conv (zero padding 1) of act(u). */
export function dwconv3x3GluTokens(u: Arr, B: number, H: number, W: number, F: number, w: Arr, bias: Arr | undefined, preSilu: boolean): Arr {
  const silu = (v: number): number => v / (1 + Math.exp(-v));
  const C2 = 2 * F,
    N = H * W;
  const out = new Float64Array(B * N * F);
  const conv = (b: number, y: number, x: number, c: number): number => {
    let acc = bias ? bias[c] : 0;
    for (let ky = 0; ky < 3; ky++)
      for (let kx = 0; kx < 3; kx++) {
        const iy = y + ky - 1,
          ix = x + kx - 1;
        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
        const v = u[(b * N + iy * W + ix) * C2 + c];
        acc += (preSilu ? silu(v) : v) * w[c * 9 + ky * 3 + kx];
      }
    return acc;
  };
  for (let b = 0; b < B; b++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) for (let c = 0; c < F; c++) out[(b * N + y * W + x) * F + c] = conv(b, y, x, c) * silu(conv(b, y, x, F + c));
  return out;
}

/** Sana's ReLU linear attention on token-major qkv (B, N, 3, H, D) -> (B, N, H, D), straight from
 *  the formula out_i = Σ_j v_j (relu(k_j) · relu(q_i)) / (Σ_j relu(k_j) · relu(q_i) + eps). */
export function linearAttentionTokens(qkv: Arr, B: number, N: number, H: number, D: number, eps: number, relu: boolean): Arr {
  const act = (x: number): number => (relu ? Math.max(0, x) : x);
  const C = H * D;
  const out = new Float64Array(B * N * C);
  const at = (b: number, n: number, part: number, h: number, d: number): number => act(qkv[(b * N + n) * 3 * C + part * C + h * D + d]);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < N; i++) {
        let den = eps;
        const num = new Float64Array(D);
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += at(b, j, 1, h, d) * at(b, i, 0, h, d);
          den += s;
          for (let d = 0; d < D; d++) num[d] += s * qkv[(b * N + j) * 3 * C + 2 * C + h * D + d];
        }
        for (let d = 0; d < D; d++) out[(b * N + i) * C + h * D + d] = num[d] / den;
      }
  return out;
}

export interface AttnRefOpts {
  scale: number;
  softcap?: number;
  causal?: boolean;
  window?: number;
  bias?: Arr;
  biasShape?: number[];
}
/** Full-matrix softmax attention: q (B, Hq, Lq, D), k (B, Hkv, Lk, D), v (B, Hkv, Lk, Dv). */
export function attention(q: Arr, k: Arr, v: Arr, [B, Hq, Lq, D]: number[], Hkv: number, Lk: number, Dv: number, o: AttnRefOpts): Arr {
  const out = new Float64Array(B * Hq * Lq * Dv),
    g = Hq / Hkv;
  const bs = o.biasShape ? (o.biasShape.length === 2 ? [o.biasShape[0], 1, 1, o.biasShape[1]] : o.biasShape) : undefined;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < Lq; i++) {
        const hk = Math.floor(h / g);
        const s = new Float64Array(Lk).fill(-Infinity);
        for (let j = 0; j < Lk; j++) {
          if (o.causal && j > i) continue;
          if (o.window && i - j >= o.window) continue;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[((b * Hq + h) * Lq + i) * D + d] * k[((b * Hkv + hk) * Lk + j) * D + d];
          dot *= o.scale;
          if (o.softcap) dot = o.softcap * Math.tanh(dot / o.softcap);
          if (o.bias && bs) dot += bcastAt(o.bias, bs, [B, Hq, Lq, Lk], [b, h, i, j]);
          s[j] = dot;
        }
        const m = Math.max(...s);
        let z = 0;
        for (let j = 0; j < Lk; j++) z += s[j] === -Infinity ? 0 : Math.exp(s[j] - m);
        for (let d = 0; d < Dv; d++) {
          let acc = 0;
          for (let j = 0; j < Lk; j++) if (s[j] !== -Infinity) acc += Math.exp(s[j] - m) * v[((b * Hkv + hk) * Lk + j) * Dv + d];
          out[((b * Hq + h) * Lq + i) * Dv + d] = acc / z;
        }
      }
  return out;
}
/** Token-major attention: q (B, Lq, H, D), kv (B, Lk, 2, H, D), key bias (B, Lk) -> (B, Lq, H, D),
 *  by the full-matrix reference above on the permuted tensors. */
export function attentionTokens(q: Arr, kv: Arr, B: number, Lq: number, Lk: number, H: number, D: number, scale: number, bias?: Arr): Arr {
  const qh = permute(q, [B, Lq, H, D], [0, 2, 1, 3]);
  const kvh = permute(kv, [B, Lk, 2, H, D], [2, 0, 3, 1, 4]);
  const n = B * H * Lk * D;
  const o = attention(qh, kvh.subarray(0, n), kvh.subarray(n), [B, H, Lq, D], H, Lk, D, { scale, bias, biasShape: bias ? [B, Lk] : undefined });
  return permute(o, [B, H, Lq, D], [0, 2, 1, 3]);
}
/** Gemma-2 self attention on a fused qkv (B, N, Hq + 2·Hkv, D) -> (B, N, Hq, D): rope (rotate_half) on q
 *  and k, then `round` (the dtype's rounding of the rotated values), causal GQA with soft-cap, key
 *  mask (B·N, 0 = padding) and window; a query that sees no key gets the mean of all N value rows. */
export function selfAttentionRope(
  qkv: Arr,
  [B, N, Hq, Hkv, D]: number[],
  o: { pos: number[]; theta: number; scale: number; softcap?: number; window?: number; mask?: ArrayLike<number>; round?: (x: number) => number },
): Arr {
  const C3 = (Hq + 2 * Hkv) * D,
    half = D / 2,
    g = Hq / Hkv;
  const rnd = o.round ?? ((x: number) => x);
  const roped = (b: number, t: number, head: number): Float64Array => {
    const r = new Float64Array(D),
      base = (b * N + t) * C3 + head * D;
    for (let i = 0; i < half; i++) {
      const a = o.pos[t] / o.theta ** ((2 * i) / D);
      const x1 = qkv[base + i],
        x2 = qkv[base + i + half];
      r[i] = rnd(x1 * Math.cos(a) - x2 * Math.sin(a));
      r[i + half] = rnd(x2 * Math.cos(a) + x1 * Math.sin(a));
    }
    return r;
  };
  const out = new Float64Array(B * N * Hq * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / g);
      const ks = Array.from({ length: N }, (_, j) => roped(b, j, Hq + hk));
      const vAt = (j: number, d: number): number => qkv[(b * N + j) * C3 + (Hq + Hkv + hk) * D + d];
      for (let i = 0; i < N; i++) {
        const q = roped(b, i, h);
        const s: number[] = [];
        const vis: number[] = [];
        for (let j = 0; j <= i; j++) {
          if (o.mask && o.mask[b * N + j] === 0) continue;
          if (o.window && i - j >= o.window) continue;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[d] * ks[j][d];
          dot *= o.scale;
          if (o.softcap) dot = o.softcap * Math.tanh(dot / o.softcap);
          s.push(dot);
          vis.push(j);
        }
        const dst = ((b * N + i) * Hq + h) * D;
        if (!vis.length) {
          for (let d = 0; d < D; d++) {
            let acc = 0;
            for (let j = 0; j < N; j++) acc += vAt(j, d);
            out[dst + d] = acc / N;
          }
          continue;
        }
        const m = Math.max(...s);
        const p = s.map((x) => Math.exp(x - m));
        const z = p.reduce((x, y) => x + y, 0);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let t = 0; t < vis.length; t++) acc += p[t] * vAt(vis[t], d);
          out[dst + d] = acc / z;
        }
      }
    }
  return out;
}
/** Sana ReLU linear attention, q/k/v (B, H, N, D). */
export function linearAttention(q: Arr, k: Arr, v: Arr, [B, H, N, D]: number[], eps: number, relu: boolean): Arr {
  const act = (x: number): number => (relu ? Math.max(0, x) : x);
  const out = new Float64Array(q.length);
  for (let bh = 0; bh < B * H; bh++) {
    const base = bh * N * D;
    for (let i = 0; i < N; i++) {
      let den = 0;
      const num = new Float64Array(D);
      for (let j = 0; j < N; j++) {
        let kq = 0;
        for (let e = 0; e < D; e++) kq += act(k[base + j * D + e]) * act(q[base + i * D + e]);
        den += kq;
        for (let d = 0; d < D; d++) num[d] += v[base + j * D + d] * kq;
      }
      for (let d = 0; d < D; d++) out[base + i * D + d] = num[d] / (den + eps);
    }
  }
  return out;
}
export function rope(x: Arr, [B, H, L, D]: number[], pos: number[], theta: number): Arr {
  const out = new Float64Array(x.length),
    half = D / 2;
  for (let bh = 0; bh < B * H; bh++)
    for (let l = 0; l < L; l++)
      for (let i = 0; i < half; i++) {
        const a = pos[l] / theta ** ((2 * i) / D);
        const p = (bh * L + l) * D;
        const x1 = x[p + i],
          x2 = x[p + i + half];
        out[p + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
        out[p + i + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
      }
  return out;
}
export function upsampleNearest(x: Arr, [B, C, H, W]: number[], f: number): Arr {
  const out = new Float64Array(x.length * f * f);
  for (let c = 0; c < B * C; c++)
    for (let oh = 0; oh < H * f; oh++)
      for (let ow = 0; ow < W * f; ow++) out[(c * H * f + oh) * W * f + ow] = x[(c * H + Math.floor(oh / f)) * W + Math.floor(ow / f)];
  return out;
}
/** PyTorch bilinear, align_corners=False. */
export function upsampleBilinear(x: Arr, [B, C, H, W]: number[], Ho: number, Wo: number): Arr {
  const src = (o: number, inn: number, out: number): [number, number, number] => {
    const s = Math.max(0, (o + 0.5) * (inn / out) - 0.5);
    const i0 = Math.min(Math.floor(s), inn - 1),
      i1 = Math.min(i0 + 1, inn - 1);
    return [i0, i1, s - i0];
  };
  const out = new Float64Array(B * C * Ho * Wo);
  for (let c = 0; c < B * C; c++)
    for (let oh = 0; oh < Ho; oh++) {
      const [h0, h1, lh] = src(oh, H, Ho);
      for (let ow = 0; ow < Wo; ow++) {
        const [w0, w1, lw] = src(ow, W, Wo);
        const at = (h: number, w: number): number => x[(c * H + h) * W + w];
        out[(c * Ho + oh) * Wo + ow] = (1 - lh) * ((1 - lw) * at(h0, w0) + lw * at(h0, w1)) + lh * ((1 - lw) * at(h1, w0) + lw * at(h1, w1));
      }
    }
  return out;
}
export function pixelShuffle(x: Arr, [B, Cr, H, W]: number[], r: number): Arr {
  const C = Cr / (r * r),
    out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let oh = 0; oh < H * r; oh++)
        for (let ow = 0; ow < W * r; ow++) {
          const ci = c * r * r + (oh % r) * r + (ow % r);
          out[((b * C + c) * H * r + oh) * W * r + ow] = x[((b * Cr + ci) * H + Math.floor(oh / r)) * W + Math.floor(ow / r)];
        }
  return out;
}

/** y (B, H+1, W+1, 4C) phases → (B, 2H, 2W, C), + the pixel-shuffled repeat of x (B, H, W, Cx). */
export function upsamplePhasesNhwc(y: Arr, B: number, H: number, W: number, C: number, x?: Arr, Cx = 0): Arr {
  const out = new Float64Array(B * 4 * H * W * C);
  const rep = x ? (4 * C) / Cx : 1;
  for (let b = 0; b < B; b++)
    for (let oy = 0; oy < 2 * H; oy++)
      for (let ox = 0; ox < 2 * W; ox++)
        for (let c = 0; c < C; c++) {
          const h = oy >> 1,
            i = oy & 1,
            w = ox >> 1,
            j = ox & 1,
            p = 2 * i + j;
          let v = y[((b * (H + 1) + h + i) * (W + 1) + w + j) * 4 * C + p * C + c];
          if (x) v += x[((b * H + h) * W + w) * Cx + Math.floor((4 * c + p) / rep)];
          out[((b * 2 * H + oy) * 2 * W + ox) * C + c] = v;
        }
  return out;
}
