// The UI -> API conversion is the engine's (engine/convert.ts, browser-safe), so the editor, the
// server and the CLI turn a workflow into the same prompt. This adapter only bridges the types.
import { convertUiToApi } from '../../../engine/convert.ts';
import type { ObjectInfo as EngineObjectInfo } from '../../../engine/registry.ts';
import type { ObjectInfo } from './object-info.ts';

export type ApiPrompt = Record<string, { class_type: string; inputs: Record<string, unknown>; _meta?: { title?: string } }>;

export function toApiPrompt(workflow: unknown, objectInfo: ObjectInfo): ApiPrompt {
  const { prompt, warnings } = convertUiToApi(workflow, objectInfo as unknown as EngineObjectInfo);
  for (const w of warnings) console.warn(`graph -> prompt: ${w}`);
  return prompt as ApiPrompt;
}
