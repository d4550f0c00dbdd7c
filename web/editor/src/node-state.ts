// Per-node run-time state that is not part of the workflow: the images a node showed, the live
// step preview, validation/execution errors, and the drawing that puts them on the canvas.
import type { LGraphNode, NodeId } from '@comfyorg/litegraph';

export type NodeErrorView = { message: string; inputs: Map<string, string> };

type ImageSlot = { url: string; img: HTMLImageElement; revoke: boolean };

const IMAGE_AREA = 256;
const ERROR_LINE = 14;

export class NodeStates {
  private images = new Map<string, ImageSlot[]>();
  private errors = new Map<string, NodeErrorView>();
  runningNode: string | null = null;
  /** Called when something changed that needs a redraw. */
  onChange: () => void = () => {};

  private key(id: NodeId): string {
    return String(id);
  }

  setImages(id: NodeId, urls: string[], revoke = false): void {
    const k = this.key(id);
    this.release(k);
    const slots = urls.map((url) => {
      const img = new Image();
      img.onload = () => this.onChange();
      img.src = url;
      return { url, img, revoke };
    });
    this.images.set(k, slots);
    this.onChange();
  }

  imagesOf(id: NodeId): { url: string; loaded: boolean; width: number; height: number }[] {
    return (this.images.get(this.key(id)) ?? []).map(({ url, img }) => ({
      url,
      loaded: img.complete && img.naturalWidth > 0,
      width: img.naturalWidth,
      height: img.naturalHeight,
    }));
  }

  private release(k: string): void {
    for (const s of this.images.get(k) ?? []) if (s.revoke) URL.revokeObjectURL(s.url);
    this.images.delete(k);
  }

  clearImages(): void {
    for (const k of [...this.images.keys()]) this.release(k);
    this.onChange();
  }

  setError(id: NodeId, view: NodeErrorView): void {
    this.errors.set(this.key(id), view);
    this.onChange();
  }

  errorOf(id: NodeId): NodeErrorView | undefined {
    return this.errors.get(this.key(id));
  }

  allErrors(): Record<string, { message: string; inputs: Record<string, string> }> {
    const out: Record<string, { message: string; inputs: Record<string, string> }> = {};
    for (const [k, v] of this.errors) out[k] = { message: v.message, inputs: Object.fromEntries(v.inputs) };
    return out;
  }

  clearErrors(): void {
    this.errors.clear();
    this.onChange();
  }

  /** Draws the node's images in the space under its widgets, growing the node once to fit. */
  drawImages(node: LGraphNode, ctx: CanvasRenderingContext2D): void {
    const slots = this.images.get(this.key(node.id));
    if (!slots?.length || node.flags.collapsed) return;
    const top = contentBottom(node) + 4;
    if (node.size[1] - top < IMAGE_AREA * 0.5) node.setSize([Math.max(node.size[0], IMAGE_AREA + 20), top + IMAGE_AREA]);
    const areaW = node.size[0] - 10;
    const areaH = node.size[1] - top - 5;
    const loaded = slots.filter((s) => s.img.complete && s.img.naturalWidth > 0);
    if (!loaded.length || areaH <= 8) return;
    // Grid: as many columns as keep every cell closest to square.
    const n = loaded.length;
    const cols = Math.max(1, Math.round(Math.sqrt((n * areaW) / areaH)));
    const rows = Math.ceil(n / cols);
    const cw = areaW / cols;
    const ch = areaH / rows;
    loaded.forEach((s, i) => {
      const { naturalWidth: iw, naturalHeight: ih } = s.img;
      const scale = Math.min(cw / iw, ch / ih);
      const w = iw * scale;
      const h = ih * scale;
      const x = 5 + (i % cols) * cw + (cw - w) / 2;
      const y = top + Math.floor(i / cols) * ch + (ch - h) / 2;
      ctx.drawImage(s.img, x, y, w, h);
    });
  }

  /** Red outline is litegraph's `has_errors`; this adds the message under the node and marks inputs. */
  drawErrors(node: LGraphNode, ctx: CanvasRenderingContext2D): void {
    const err = this.errors.get(this.key(node.id));
    if (!err) return;
    ctx.save();
    ctx.strokeStyle = '#ff3b3b';
    ctx.lineWidth = 2;
    for (const name of err.inputs.keys()) {
      const widget = node.widgets?.find((w) => w.name === name);
      const slotIndex = node.inputs.findIndex((s) => s.name === name);
      if (widget && !node.inputs[slotIndex]?.link) {
        ctx.strokeRect(12, widget.y, node.size[0] - 24, (widget.computedHeight ?? 24) - 4);
      } else if (slotIndex >= 0) {
        const pos = node.getInputPos(slotIndex);
        ctx.beginPath();
        ctx.arc(pos[0] - node.pos[0], pos[1] - node.pos[1], 8, 0, Math.PI * 2);
        ctx.stroke();
      }
    }
    ctx.font = '12px sans-serif';
    const lines = [err.message, ...[...err.inputs].map(([k, v]) => `${k}: ${v}`)].filter((l, i, a) => l && a.indexOf(l) === i);
    if (!lines.length) return;
    const width = Math.max(node.size[0], ...lines.map((l) => ctx.measureText(l).width + 16));
    const y0 = node.size[1] + 10;
    ctx.fillStyle = 'rgba(120, 0, 0, 0.9)';
    ctx.fillRect(0, y0, width, lines.length * ERROR_LINE + 8);
    ctx.fillStyle = '#fff';
    lines.forEach((l, i) => ctx.fillText(l, 8, y0 + 15 + i * ERROR_LINE));
    ctx.restore();
  }
}

/** Bottom of the last widget, or of the slots when the node has no widgets (node-local y). */
function contentBottom(node: LGraphNode): number {
  const last = node.widgets?.at(-1);
  if (last) return last.y + (last.computedHeight ?? 24);
  const slots = Math.max(node.inputs.length, node.outputs.length);
  return slots * 20 + 4;
}
