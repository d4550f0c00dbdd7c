// Host-side embeddings of the Sana transformer, computed with PyTorch's exact float32/float64
// recipes: the 256-wide timestep sinusoid and the 2K/4K sin-cos positional table (shared/spec/sana.md §2.4).

const f32 = Math.fround;

/** diffusers get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0) in float32:
 *  row b = [cos(t_b·f_0..127), sin(t_b·f_0..127)], f_k = exp(-ln(1e4)·k/128). Returns (B, 256). */
export function timestepSinusoid(t: readonly number[], dim = 256): Float32Array {
  const half = dim / 2;
  const negLn = f32(-Math.log(10000));
  const freqs = new Float32Array(half);
  for (let k = 0; k < half; k++) freqs[k] = f32(Math.exp(f32(f32(negLn * k) / half)));
  const out = new Float32Array(t.length * dim);
  t.forEach((tv, b) => {
    const tf = f32(tv);
    for (let k = 0; k < half; k++) {
      const arg = f32(tf * freqs[k]!);
      out[b * dim + k] = Math.cos(arg);
      out[b * dim + half + k] = Math.sin(arg);
    }
  });
  return out;
}

/** 2-D sin-cos positional embedding of diffusers PatchEmbed (shared/spec/sana.md §2.4): (h·w, D) float32, token
 *  n = r·w + c gets [emb(x = column), emb(y = row)]. Grid positions are float32 like torch.arange;
 *  frequencies and sin/cos in float64, then rounded to float32. */
export function sincosPosEmbed(D: number, h: number, w: number, baseSize: number, interpolationScale: number): Float32Array {
  if (D % 4 !== 0) throw new Error(`sincos positional embedding: model width ${D} must be divisible by 4`);
  const E = D / 2, Q = E / 2;
  const omega = new Float64Array(Q);
  for (let k = 0; k < Q; k++) omega[k] = 1 / Math.pow(10000, k / (E / 2));
  const gy = new Float32Array(h), gx = new Float32Array(w);
  for (let r = 0; r < h; r++) gy[r] = f32(f32(r / f32(h / baseSize)) / interpolationScale);
  for (let c = 0; c < w; c++) gx[c] = f32(f32(c / f32(w / baseSize)) / interpolationScale);
  const out = new Float32Array(h * w * D);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const o = (r * w + c) * D;
      for (let k = 0; k < Q; k++) {
        const ax = gx[c]! * omega[k]!, ay = gy[r]! * omega[k]!;
        out[o + k] = Math.sin(ax);
        out[o + Q + k] = Math.cos(ax);
        out[o + E + k] = Math.sin(ay);
        out[o + E + Q + k] = Math.cos(ay);
      }
    }
  }
  return out;
}
