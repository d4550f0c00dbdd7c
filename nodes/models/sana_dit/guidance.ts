// Guidance (shared/spec/sana.md §7): the batch layout of each CFG/PAG mode, diffusers' adaptive PAG scale and
// the float32 combination of the transformer's output slots.

const f32 = Math.fround;

export type GuidanceMode = 'none' | 'cfg' | 'pag' | 'cfg+pag';

/** How many copies of the latent batch the transformer sees, what text goes into each slot, and
 *  which batch rows (in units of the prompt batch B) take identity attention. */
export function guidanceLayout(mode: GuidanceMode, B: number): { copies: number; text: Array<'uncond' | 'cond'>; pagSlice?: [number, number] } {
  switch (mode) {
    case 'none': return { copies: 1, text: ['cond'] };
    case 'cfg': return { copies: 2, text: ['uncond', 'cond'] };
    case 'pag': return { copies: 2, text: ['cond', 'cond'], pagSlice: [B, 2 * B] };
    case 'cfg+pag': return { copies: 3, text: ['uncond', 'cond', 'cond'], pagSlice: [2 * B, 3 * B] };
  }
}

/** diffusers' adaptive PAG scale: max(0, pag_scale − adaptive·(1000 − t)); adaptive 0 = constant. */
export function pagScaleAt(pagScale: number, adaptiveScale: number, t: number): number {
  return Math.max(0, pagScale - adaptiveScale * (1000 - t));
}

/**
 * Combines the transformer output (copies·B, C, h, w), flattened, into the guided velocity (B, C, h, w)
 * in float32, with each operation rounded to float32 as torch does:
 *   cfg: u + g·(c − u);  cfg+pag: u + g·(c − u) + p·(c − p̃);  pag: c + p·(c − p̃);  none: c.
 */
export function combineGuidance(out: Float32Array, mode: GuidanceMode, scales: { cfg?: number; pag?: number }): Float32Array {
  const copies = guidanceLayout(mode, 1).copies;
  if (out.length % copies !== 0) throw new Error(`combineGuidance: output length ${out.length} is not a multiple of ${copies} slots for mode ${mode}`);
  const n = out.length / copies;
  const g = f32(scales.cfg ?? 1), p = f32(scales.pag ?? 0);
  const res = new Float32Array(n);
  if (mode === 'none') { res.set(out.subarray(0, n)); return res; }
  for (let i = 0; i < n; i++) {
    if (mode === 'cfg') {
      const u = out[i]!, c = out[n + i]!;
      res[i] = f32(u + f32(g * f32(c - u)));
    } else if (mode === 'cfg+pag') {
      const u = out[i]!, c = out[n + i]!, pt = out[2 * n + i]!;
      res[i] = f32(f32(u + f32(g * f32(c - u))) + f32(p * f32(c - pt)));
    } else {
      const c = out[i]!, pt = out[n + i]!;
      res[i] = f32(c + f32(p * f32(c - pt)));
    }
  }
  return res;
}
