// control_after_generate: after a prompt is queued, every widget that has a control companion
// moves to its next value (ComfyUI's "after generate" semantics: the queued run keeps the value
// it was queued with; the next one gets the new value).
import type { LGraph } from '@comfyorg/litegraph';
import { CONTROL_VALUES, nextControlledValue, type ControlMode } from './object-info.ts';
import { CONTROL_WIDGET_NAME, type PlannedWidget } from './widgets.ts';

export function applyControlAfterGenerate(graph: LGraph, rand: () => number = Math.random): number {
  let changed = 0;
  for (const node of graph.nodes) {
    // Muted (2) and bypassed (4) nodes were not part of the run.
    if (node.mode === 2 || node.mode === 4) continue;
    const widgets = (node.widgets ?? []) as PlannedWidget[];
    for (const control of widgets) {
      if (control.name !== CONTROL_WIDGET_NAME || !control.controls) continue;
      const mode = String(control.value) as ControlMode;
      if (!CONTROL_VALUES.includes(mode) || mode === 'fixed') continue;
      const target = widgets.find((w) => w.name === control.controls);
      const plan = target?.plan;
      if (!target || !plan) continue;
      // A linked widget takes its value from upstream; there is nothing to advance.
      if (node.inputs.find((i) => i.widget?.name === target.name)?.link != null) continue;
      if (plan.kind === 'INT' || plan.kind === 'FLOAT') {
        target.value = nextControlledValue(mode, Number(target.value), plan, rand);
        changed++;
      } else if (plan.kind === 'COMBO') {
        const values = plan.values;
        const i = values.findIndex((v: string | number) => String(v) === String(target.value));
        const next = nextControlledValue(mode, i < 0 ? 0 : i, { min: 0, max: values.length - 1, step: 1 }, rand);
        target.value = values[next];
        changed++;
      }
    }
  }
  if (changed) graph.setDirtyCanvas(true, false);
  return changed;
}
