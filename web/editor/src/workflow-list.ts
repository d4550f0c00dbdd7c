// The toolbar's workflow picker, DOM-free: which shipped files it offers and under what name.
// GET /workflows lists file names only; the readable titles live in the server's template index
// (/templates/index.json, the ComfyUI template browser's format), which is optional.

export type WorkflowChoice = {
  /** File name to fetch from /workflows/<file>. */
  file: string;
  /** Shown in the picker. */
  label: string;
  /** Tooltip; empty when the server gave none. */
  description: string;
};

const UI_SUFFIX = '.ui.json';

/** Titles and descriptions by template name, from a ComfyUI template index; empty for anything else. */
export function templateTitles(index: unknown): Map<string, { title?: string; description?: string }> {
  const out = new Map<string, { title?: string; description?: string }>();
  if (!Array.isArray(index)) return out;
  for (const category of index) {
    const templates = (category as { templates?: unknown } | null)?.templates;
    if (!Array.isArray(templates)) continue;
    for (const t of templates) {
      if (!t || typeof t !== 'object') continue;
      const { name, title, description } = t as Record<string, unknown>;
      if (typeof name !== 'string') continue;
      out.set(name, {
        title: typeof title === 'string' && title.trim() ? title : undefined,
        description: typeof description === 'string' ? description : undefined,
      });
    }
  }
  return out;
}

/**
 * The UI-format files of a GET /workflows answer, labelled from the template index where it has
 * the name, else by the file stem. API-format files are left out: the editor opens UI graphs.
 */
export function workflowChoices(files: unknown, templateIndex?: unknown): WorkflowChoice[] {
  if (!Array.isArray(files)) throw new Error('GET /workflows did not answer a list of file names');
  const titles = templateTitles(templateIndex);
  return files
    .filter((f): f is string => typeof f === 'string' && f.endsWith(UI_SUFFIX))
    .map((file) => {
      const stem = file.slice(0, -UI_SUFFIX.length);
      const t = titles.get(stem);
      return { file, label: t?.title ?? stem, description: t?.description ?? '' };
    });
}
