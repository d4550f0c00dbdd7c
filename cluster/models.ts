// The models a prompt loads, read from its loader nodes' constant inputs: the key a worker
// advertises once it holds them in memory, and the front end stores with the job, for model
// affinity (worker.ts). A pure function of the API prompt; inputs fed by links are unknown
// before the run and ignored.

/** Loader class -> [input name, model kind]. The aliases map to the same kinds as their targets,
 *  so a ComfyUI-style graph and a native one that load the same files share keys. */
const LOADERS: Record<string, Array<[string, string]>> = {
  SanaDiT: [['ckpt_name', 'checkpoint']],
  SanaCheckpointLoader: [['ckpt_name', 'checkpoint']],
  TextEncoderGemma: [['text_encoder', 'text_encoder']],
  LoadGemma2: [['text_encoder', 'text_encoder']],
  GemmaLoader: [['model_name', 'text_encoder']],
  DCAELoader: [['vae_name', 'vae']],
  ExtraVAELoader: [['vae_name', 'vae']],
  SanaLoraLoader: [['lora_name', 'lora']],
  LoraLoaderModelOnly: [['lora_name', 'lora']],
};

/** Sorted, unique `<kind>:<name>` keys, e.g. `checkpoint:sana/Sana_Tiny_diffusers`. */
export function modelKeys(prompt: Record<string, unknown>): string[] {
  const keys = new Set<string>();
  for (const node of Object.values(prompt)) {
    if (typeof node !== 'object' || node === null) continue;
    const { class_type: cls, inputs } = node as { class_type?: unknown; inputs?: unknown };
    const spec = typeof cls === 'string' ? LOADERS[cls] : undefined;
    if (!spec || typeof inputs !== 'object' || inputs === null) continue;
    for (const [input, kind] of spec) {
      const v = (inputs as Record<string, unknown>)[input];
      if (typeof v === 'string' && v !== '') keys.add(`${kind}:${v}`);
    }
  }
  return [...keys].sort();
}

/** True when `held` contains every key of `wanted` (and `wanted` is not empty). */
export function holdsAll(held: Iterable<string>, wanted: readonly string[]): boolean {
  if (wanted.length === 0) return false;
  const set = held instanceof Set ? (held as Set<string>) : new Set(held);
  return wanted.every((k) => set.has(k));
}
