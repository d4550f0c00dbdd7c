// Inpainting inside a flow sampler, ComfyUI's KSampler way (KSamplerX0Inpaint) in flow form:
// before each model call the unmasked part of x is replaced by the input latent noised to the
// current sigma, x ← x·m + ((1 − σ)·latent + σ·noise)·(1 − m), and the model's denoised estimate
// is replaced there by the input latent, x0 ← x0·m + latent·(1 − m). With a flow prediction
// v = (x − x0)/σ that is v ← v·m + ((x − latent)/σ)·(1 − m), so any solver stepping on v keeps
// the unmasked part on the input's noising path; after the last step (σ = 0) it is the input.
// m = 1 regenerates, 0 keeps. Elementwise float32 arrays of the latent's (B, C, h, w) shape.
const fr = Math.fround;

/** A (Bm, h, w) noise mask (Bm = 1 or B) spread over the channels of a (B, C, h, w) latent. */
export function expandNoiseMask(mask: { data: Float32Array; shape: readonly [number, number, number] }, shape: readonly [number, number, number, number], who: string): Float32Array {
  const [B, C, h, w] = shape;
  const [Bm, mh, mw] = mask.shape;
  if (mh !== h || mw !== w) throw new Error(`${who}: the latent's noise mask is ${mw}x${mh} but the latent ${w}x${h}`);
  if (Bm !== 1 && Bm !== B) throw new Error(`${who}: the latent's noise mask has a batch of ${Bm} but the latent ${B}`);
  const out = new Float32Array(B * C * h * w);
  for (let b = 0; b < B; b++) {
    const src = mask.data.subarray((Bm === 1 ? 0 : b) * h * w, ((Bm === 1 ? 0 : b) + 1) * h * w);
    for (let c = 0; c < C; c++) out.set(src, (b * C + c) * h * w);
  }
  return out;
}

/** x·m + keep·(1 − m); exactly x where m = 1 and exactly keep where m = 0. */
export function blendMasked(x: Float32Array, keep: Float32Array, m: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const mi = m[i]!;
    out[i] = mi === 1 ? x[i]! : mi === 0 ? keep[i]! : fr(fr(x[i]! * mi) + fr(keep[i]! * fr(1 - mi)));
  }
  return out;
}

/** The flow prediction whose denoised estimate is the input latent outside the mask (header). */
export function maskedVelocity(v: Float32Array, x: Float32Array, latent: Float32Array, sigma: number, m: Float32Array): Float32Array {
  const out = new Float32Array(v.length);
  const s = fr(sigma);
  for (let i = 0; i < v.length; i++) {
    const mi = m[i]!;
    const keepV = fr(fr(x[i]! - latent[i]!) / s);
    out[i] = mi === 1 ? v[i]! : mi === 0 ? keepV : fr(fr(v[i]! * mi) + fr(keepV * fr(1 - mi)));
  }
  return out;
}
