// Builds litegraph widgets from the widget plans of object-info.ts: numbers with range and step,
// combos, toggles, single-line and multiline text, and the control_after_generate companion.
import type { LGraphCanvas, LGraphNode, CanvasPointer } from '@comfyorg/litegraph';

type IBaseWidget = NonNullable<LGraphNode['widgets']>[number];
import { CONTROL_VALUES, precisionOf, snapNumber, type ControlMode, type WidgetPlan } from './object-info.ts';

export const CONTROL_WIDGET_NAME = 'control_after_generate';

/** Widgets that carry their plan, so later code (seed control, tests) can read min/max/step. */
export type PlannedWidget = IBaseWidget & { plan?: WidgetPlan; controls?: string };

/** Widget callback for widgets whose value needs no post-processing: repaint the node. */
function redraw(node: LGraphNode): () => void {
  return () => node.setDirtyCanvas(true, false);
}

export function addPlannedWidget(node: LGraphNode, plan: WidgetPlan): PlannedWidget {
  let w: PlannedWidget;
  switch (plan.kind) {
    case 'INT':
    case 'FLOAT': {
      w = node.addWidget(
        'number',
        plan.name,
        plan.value,
        (v: number) => {
          // litegraph clamps but does not snap; the server checks min/max, the user expects the step.
          const snapped = snapNumber(plan, Number(v));
          if (snapped !== w.value) w.value = snapped;
        },
        {
          min: plan.min,
          max: plan.max,
          step2: plan.step,
          precision: precisionOf(plan),
        },
      ) as PlannedWidget;
      break;
    }
    case 'COMBO':
      w = node.addWidget('combo', plan.name, plan.value, redraw(node), { values: plan.values.map(String) }) as PlannedWidget;
      // Numeric choices keep their type so the API prompt is not "1.0" where 1.0 was offered.
      if (plan.values.some((v) => typeof v === 'number')) {
        w.callback = (v: unknown) => {
          const match = plan.values.find((c) => String(c) === String(v));
          if (match !== undefined) w.value = match;
        };
      }
      break;
    case 'BOOLEAN':
      w = node.addWidget('toggle', plan.name, plan.value, redraw(node), { on: plan.labelOn ?? 'true', off: plan.labelOff ?? 'false' }) as PlannedWidget;
      break;
    case 'STRING':
      w = plan.multiline
        ? addMultilineWidget(node, plan.name, plan.value, plan.placeholder)
        : (node.addWidget('text', plan.name, plan.value, redraw(node), {}) as PlannedWidget);
      break;
  }
  w.plan = plan;
  if (plan.tooltip) w.tooltip = plan.tooltip;
  return w;
}

/** The fixed/increment/decrement/randomize selector that follows a seed widget. */
export function addControlWidget(node: LGraphNode, target: string, initial: ControlMode = 'randomize'): PlannedWidget {
  const w = node.addWidget('combo', CONTROL_WIDGET_NAME, initial, redraw(node), { values: [...CONTROL_VALUES] }) as PlannedWidget;
  // options.serialize=false keeps it out of the API prompt; it stays in widgets_values (shared/spec/comfyui-api.md §3.4).
  (w.options as Record<string, unknown>).serialize = false;
  w.controls = target;
  return w;
}

export const UPLOAD_WIDGET_NAME = 'upload';

/** Sends a file to the server's input folder and returns the name to select in the combo. */
export type Uploader = (file: File) => Promise<string>;
let uploader: Uploader | null = null;

export function setUploader(fn: Uploader): void {
  uploader = fn;
}

/**
 * The "choose file to upload" button after an `image_upload` combo. Its value "image" is what
 * ComfyUI stores in widgets_values for it; options.serialize=false keeps it out of the prompt.
 */
export function addUploadWidget(node: LGraphNode, target: string): PlannedWidget {
  const w = node.addWidget(
    'button',
    UPLOAD_WIDGET_NAME,
    'image',
    () => {
      const combo = node.widgets?.find((x) => x.name === target);
      if (!combo || !uploader) return;
      const send = uploader;
      const input = document.createElement('input');
      input.type = 'file';
      input.accept = 'image/png,image/jpeg,image/webp';
      input.addEventListener('change', async () => {
        const file = input.files?.[0];
        if (!file) return;
        const name = await send(file);
        const values = (combo.options as { values?: string[] }).values ?? [];
        if (!values.includes(name)) values.push(name);
        combo.value = name;
        node.setDirtyCanvas(true, true);
      });
      input.click();
    },
    {},
  ) as PlannedWidget;
  (w.options as Record<string, unknown>).serialize = false;
  w.label = 'choose file to upload';
  w.value = 'image';
  return w;
}

const MULTILINE_HEIGHT = 96;
const LINE_HEIGHT = 14;

function wrapLines(ctx: CanvasRenderingContext2D, text: string, width: number, maxLines: number): string[] {
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(/(\s+)/)) {
      const next = line + word;
      if (ctx.measureText(next).width > width && line) {
        out.push(line);
        line = word.trimStart();
      } else {
        line = next;
      }
      if (out.length >= maxLines) return out;
    }
    out.push(line);
    if (out.length >= maxLines) return out;
  }
  return out;
}

/**
 * A text box several lines tall, drawn on the canvas; a click opens a real <textarea> over it,
 * which is committed on blur and dismissed with Escape.
 */
function addMultilineWidget(node: LGraphNode, name: string, value: string, placeholder?: string): PlannedWidget {
  const widget = {
    type: 'customtext',
    name,
    value,
    y: 0,
    options: { multiline: true },
    computeSize(width?: number): [number, number] {
      return [width ?? 200, MULTILINE_HEIGHT];
    },
    draw(ctx: CanvasRenderingContext2D, n: LGraphNode, width: number, y: number) {
      const margin = 15;
      const h = MULTILINE_HEIGHT - 4;
      ctx.save();
      ctx.fillStyle = '#1b1b1b';
      ctx.strokeStyle = '#555';
      ctx.beginPath();
      ctx.roundRect(margin, y, width - margin * 2, h, 6);
      ctx.fill();
      ctx.stroke();
      ctx.font = '12px sans-serif';
      const text = String(widget.value ?? '');
      ctx.fillStyle = text ? '#ddd' : '#777';
      const lines = wrapLines(ctx, text || placeholder || name, width - margin * 2 - 12, Math.floor((h - 8) / LINE_HEIGHT));
      lines.forEach((line, i) => ctx.fillText(line, margin + 6, y + 16 + i * LINE_HEIGHT));
      ctx.restore();
      void n;
    },
    onPointerDown(pointer: CanvasPointer, n: LGraphNode, canvas: LGraphCanvas): boolean {
      pointer.onClick = () => openTextEditor(canvas, n, widget);
      return true;
    },
  };
  return node.addCustomWidget(widget as unknown as IBaseWidget) as PlannedWidget;
}

function openTextEditor(canvas: LGraphCanvas, node: LGraphNode, widget: { name: string; value: unknown; y: number }): void {
  document.querySelector('.multiline-editor')?.remove();
  const ds = canvas.ds;
  const rect = canvas.canvas.getBoundingClientRect();
  const margin = 15;
  const x = (node.pos[0] + margin + ds.offset[0]) * ds.scale + rect.left;
  const y = (node.pos[1] + widget.y + ds.offset[1]) * ds.scale + rect.top;
  const ta = document.createElement('textarea');
  ta.className = 'multiline-editor';
  ta.dataset.node = String(node.id);
  ta.dataset.widget = widget.name;
  ta.value = String(widget.value ?? '');
  Object.assign(ta.style, {
    left: `${x}px`,
    top: `${y}px`,
    width: `${(node.size[0] - margin * 2) * ds.scale}px`,
    height: `${Math.max(MULTILINE_HEIGHT * 2, 160) * ds.scale}px`,
    fontSize: `${Math.max(11, 13 * ds.scale)}px`,
  });
  let cancelled = false;
  const commit = () => {
    if (!cancelled && ta.value !== widget.value) {
      widget.value = ta.value;
      node.graph?.change();
    }
    ta.remove();
    canvas.setDirty(true, true);
  };
  ta.addEventListener('blur', commit);
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      // Commit first, then let the event bubble to the global Ctrl+Enter (queue) handler.
      ta.blur();
      return;
    }
    // Other keys typed here must not reach the canvas shortcuts (Delete removes nodes there).
    e.stopPropagation();
    if (e.key === 'Escape') {
      cancelled = true;
      ta.blur();
    }
  });
  document.body.append(ta);
  ta.focus();
}
