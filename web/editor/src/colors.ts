// Slot and link colours by socket type: ComfyUI's palette for the types it shares with us, and a
// stable hashed hue for any other type, so every type gets its own colour without a list.
const KNOWN: Record<string, string> = {
  MODEL: '#B39DDB',
  SANA_MODEL: '#B39DDB',
  CLIP: '#FFD500',
  GEMMA: '#FFD500',
  CONDITIONING: '#FFA931',
  LATENT: '#FF9CF9',
  VAE: '#FF6E6E',
  DCAE: '#FF6E6E',
  IMAGE: '#64B5F6',
  MASK: '#81C784',
  INT: '#29B6B6',
  FLOAT: '#AEEA00',
  STRING: '#77E0A0',
  BOOLEAN: '#D1A3FF',
  COMBO: '#9E9E9E',
};

export function colorForType(type: string): string {
  const known = KNOWN[type];
  if (known) return known;
  let h = 0;
  for (const ch of type) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360}, 65%, 62%)`;
}
