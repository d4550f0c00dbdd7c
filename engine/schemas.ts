// Workflow formats (zod 4): the API ("prompt") format and the litegraph UI format, schema 0.4
// and version 1. Lenient: unknown keys are kept everywhere, as real files carry extras.
// Browser-safe (the editor bundles it).

import { z } from 'zod';

// ---- API format (shared/spec/comfyui-api.md §3.1) -------------------------------------------------------------

/** A link input: `[source node id, output index]`. */
export type LinkRef = [string, number];

export const zApiNode = z.looseObject({
  class_type: z.string(),
  inputs: z.record(z.string(), z.unknown()).default({}),
  _meta: z.looseObject({ title: z.string().optional() }).optional(),
});
export const zApiPrompt = z.record(z.string(), zApiNode);

export interface ApiNode {
  class_type: string;
  inputs: Record<string, unknown>;
  _meta?: { title?: string; [k: string]: unknown };
  [k: string]: unknown;
}
export type ApiPrompt = Record<string, ApiNode>;

/** Any 2-element array is a link (ComfyUI's rule); its validity is checked by validation. */
export function isLinkLike(v: unknown): v is [unknown, unknown] {
  return Array.isArray(v) && v.length === 2;
}

// ---- UI format (shared/spec/comfyui-api.md §3.2, §3.3) --------------------------------------------------------

const zNodeId = z.union([z.number(), z.string()]);
const zPoint = z.union([z.array(z.number()), z.record(z.string(), z.number())]);

export const zUiNodeInput = z.looseObject({
  name: z.string(),
  type: z.unknown().optional(),
  link: z.number().nullable().optional(),
  widget: z.looseObject({ name: z.string() }).optional(),
});
export const zUiNodeOutput = z.looseObject({
  name: z.string().optional(),
  type: z.unknown().optional(),
  links: z.array(z.number()).nullable().optional(),
});

export const zUiNode = z.looseObject({
  id: zNodeId,
  type: z.string(),
  pos: zPoint.optional(),
  size: zPoint.optional(),
  mode: z.number().optional(),
  order: z.number().optional(),
  title: z.string().optional(),
  inputs: z.array(zUiNodeInput).optional(),
  outputs: z.array(zUiNodeOutput).optional(),
  properties: z.record(z.string(), z.unknown()).optional(),
  widgets_values: z.union([z.array(z.unknown()), z.record(z.string(), z.unknown())]).optional(),
});

/** 0.4 links are arrays `[id, origin_id, origin_slot, target_id, target_slot, type]`. */
export const zUiLinkArray = z.tuple([z.number(), zNodeId, z.number(), zNodeId, z.number()], z.unknown());
/** Version 1 links are objects. */
export const zUiLinkObject = z.looseObject({
  id: z.number(),
  origin_id: zNodeId,
  origin_slot: z.number(),
  target_id: zNodeId,
  target_slot: z.number(),
  type: z.unknown().optional(),
  parentId: z.number().optional(),
});

const zGroup = z.looseObject({ title: z.string().optional(), bounding: z.array(z.number()).optional() });

export const zUiWorkflow04 = z.looseObject({
  id: z.string().optional(),
  revision: z.number().optional(),
  last_node_id: zNodeId.optional(),
  last_link_id: z.number().optional(),
  nodes: z.array(zUiNode),
  // Some saved files carry null holes where a link was deleted.
  links: z.array(zUiLinkArray.nullable()).default([]),
  groups: z.array(zGroup).optional(),
  config: z.record(z.string(), z.unknown()).nullable().optional(),
  extra: z.record(z.string(), z.unknown()).nullable().optional(),
  version: z.number(),
});

type SubgraphShape = z.infer<typeof zUiWorkflow1Base> & {
  id: string;
  name?: string;
  inputNode?: { id: number };
  outputNode?: { id: number };
  inputs?: { id?: string; name: string; type?: unknown; linkIds?: number[] }[];
  outputs?: { id?: string; name: string; type?: unknown; linkIds?: number[] }[];
  definitions?: { subgraphs?: SubgraphShape[] };
};

const zUiWorkflow1Base = z.looseObject({
  id: z.string().optional(),
  revision: z.number().optional(),
  state: z.looseObject({}).optional(),
  nodes: z.array(zUiNode),
  links: z.array(zUiLinkObject.nullable()).default([]),
  groups: z.array(zGroup).optional(),
  config: z.record(z.string(), z.unknown()).nullable().optional(),
  extra: z.record(z.string(), z.unknown()).nullable().optional(),
});

const zSubgraphSlot = z.looseObject({
  id: z.string().optional(),
  name: z.string(),
  type: z.unknown().optional(),
  linkIds: z.array(z.number()).optional(),
});

export const zSubgraph: z.ZodType<SubgraphShape> = z.lazy(() =>
  zUiWorkflow1Base.extend({
    id: z.string(),
    name: z.string().optional(),
    inputNode: z.looseObject({ id: z.number() }).optional(),
    outputNode: z.looseObject({ id: z.number() }).optional(),
    inputs: z.array(zSubgraphSlot).optional(),
    outputs: z.array(zSubgraphSlot).optional(),
    definitions: z.looseObject({ subgraphs: z.array(zSubgraph).optional() }).optional(),
  }),
) as z.ZodType<SubgraphShape>;

export const zUiWorkflow1 = zUiWorkflow1Base.extend({
  version: z.literal(1),
  definitions: z.looseObject({ subgraphs: z.array(zSubgraph).optional() }).optional(),
});

export type UiNode = z.infer<typeof zUiNode>;
export type UiNodeInput = z.infer<typeof zUiNodeInput>;
export type UiWorkflow04 = z.infer<typeof zUiWorkflow04>;
export type UiWorkflow1 = z.infer<typeof zUiWorkflow1>;
export type UiSubgraph = SubgraphShape;
export type UiWorkflow = UiWorkflow04 | UiWorkflow1;

/** The frontend's rule: `version === 1` selects the v1 schema, anything else 0.4. */
export function parseUiWorkflow(json: unknown): UiWorkflow {
  const version = (json as { version?: unknown } | null)?.version;
  return version === 1 ? zUiWorkflow1.parse(json) : zUiWorkflow04.parse(json);
}

export type WorkflowFile = { kind: 'api'; prompt: ApiPrompt } | { kind: 'ui'; workflow: UiWorkflow };

/**
 * Tells API from UI JSON as the frontend does: an object whose every value has `class_type` is
 * a prompt; an object with a `nodes` array is a UI workflow. Throws a ZodError-bearing Error
 * naming the problem otherwise.
 */
export function parseWorkflowFile(json: unknown): WorkflowFile {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error('workflow JSON must be an object (API prompt or UI workflow)');
  }
  const values = Object.values(json as Record<string, unknown>);
  if (values.length > 0 && values.every((v) => v !== null && typeof v === 'object' && 'class_type' in v)) {
    return { kind: 'api', prompt: zApiPrompt.parse(json) as ApiPrompt };
  }
  if (Array.isArray((json as { nodes?: unknown }).nodes)) return { kind: 'ui', workflow: parseUiWorkflow(json) };
  throw new Error('workflow JSON is neither an API prompt (every value has class_type) nor a UI workflow (has a nodes array)');
}
