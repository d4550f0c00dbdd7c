// Registers one litegraph node class per `/object_info` entry: typed sockets, widgets with a
// socket each (so a widget can be driven by a link, as in ComfyUI), outputs, category and title.
import { LGraphNode, LiteGraph, RenderShape } from '@comfyorg/litegraph';
import { planNode, type InputPlan, type ObjectInfo } from './object-info.ts';
import { addControlWidget, addPlannedWidget, addUploadWidget } from './widgets.ts';
import type { NodeStates } from './node-state.ts';

/** A hollow socket: the ComfyUI frontend's mark for optional inputs. */
const OPTIONAL_SHAPE = RenderShape.HollowCircle;

function addWidgetSocket(node: LGraphNode, p: InputPlan): void {
  node.addInput(p.name, p.type, {
    widget: { name: p.name },
    ...(p.optional ? { shape: OPTIONAL_SHAPE } : {}),
    ...(p.tooltip ? { tooltip: p.tooltip } : {}),
  });
}

export function registerNodeDefs(defs: ObjectInfo, states: NodeStates): string[] {
  const registered: string[] = [];
  for (const [key, def] of Object.entries(defs)) {
    if (def.name !== key) throw new Error(`object_info: entry ${key} has name ${def.name}; they must match`);
    const plans = planNode(def);
    const title = def.display_name || def.name;
    class Node extends LGraphNode {
      comfyClass = def.name;
      constructor(t?: string) {
        super(t ?? title);
        this.serialize_widgets = true;
        for (const p of plans) {
          if (p.widget) {
            addPlannedWidget(this, p.widget);
            if (p.control) addControlWidget(this, p.name);
            if (p.upload) addUploadWidget(this, p.name);
            addWidgetSocket(this, p);
          } else {
            this.addInput(p.name, p.type, {
              ...(p.optional ? { shape: OPTIONAL_SHAPE } : {}),
              ...(p.tooltip ? { tooltip: p.tooltip } : {}),
            });
          }
        }
        (def.output ?? []).forEach((type, i) => {
          // A COMBO output is a list of choices; as a slot it is typed COMBO.
          const t = Array.isArray(type) ? 'COMBO' : type;
          const label = def.output_name?.[i] ?? t;
          this.addOutput(label, t);
        });
        this.strokeStyles.running = function (this: LGraphNode) {
          return states.runningNode === String(this.id) ? { color: '#35d435', padding: 6, lineWidth: 3 } : undefined;
        };
        const size = this.computeSize();
        this.size = [Math.max(size[0], 240), size[1]];
      }

      override onDrawBackground(ctx: CanvasRenderingContext2D): void {
        states.drawImages(this, ctx);
      }

      override onDrawForeground(ctx: CanvasRenderingContext2D): void {
        states.drawErrors(this, ctx);
      }

      // Workflows saved by older frontends have no sockets for widgets; add them back so the
      // widget can still be linked, keeping existing slot indexes (links refer to them).
      override onConfigure(): void {
        for (const p of plans) {
          if (!p.widget) continue;
          if (!this.inputs.some((i) => i.name === p.name)) addWidgetSocket(this, p);
        }
      }
    }
    LiteGraph.registerNodeType(def.name, Node as unknown as typeof LGraphNode);
    // registerNodeType derives the category from a "/" in the type name; ComfyUI types have none.
    const ctor = Node as unknown as { title: string; category: string; description?: string };
    ctor.title = title;
    ctor.category = def.category || 'sd';
    ctor.description = def.description;
    registered.push(def.name);
  }
  return registered;
}
