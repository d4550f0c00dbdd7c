// Route schemas are zod types. Fastify calls zodValidatorCompiler once per route and part (body,
// querystring, params, headers); the parsed value — coerced, defaulted, unknown keys dropped —
// replaces the raw one, so handlers get typed input (ZodTypeProvider) instead of `typeof` chains.
// A failed parse is a SchemaError: the app's error handler answers it in ComfyUI's shape, or a
// route renders its own answer with `invalidAs` (ComfyUI's routes disagree on error bodies, and
// clients branch on them). Responses with a zod schema are checked the same way on the way out.
import type { FastifyError, FastifyReply, FastifyRequest, FastifySchemaCompiler, FastifySerializerCompiler, FastifyTypeProvider } from 'fastify';
import { z } from 'zod';
import { stringifyJson } from '../../engine/json.ts';
import { asObject } from './body.ts';
import { handleError } from './errors.ts';

export interface ZodTypeProvider extends FastifyTypeProvider {
  validator: this['schema'] extends z.ZodType ? z.output<this['schema']> : unknown;
  serializer: this['schema'] extends z.ZodType ? z.input<this['schema']> : unknown;
}

export type Issue = z.core.$ZodIssue;

export class SchemaError extends Error {
  readonly statusCode = 400;
  readonly code = 'invalid_request';
  constructor(readonly issues: Issue[]) {
    super(issues[0]?.message ?? 'invalid request');
  }

  /** The first issue: zod checks an object's keys in shape order, so routes order their checks there. */
  get issue(): Issue {
    return this.issues[0]!;
  }
}

export const zodValidatorCompiler: FastifySchemaCompiler<z.ZodType> =
  ({ schema }) =>
  (data: unknown) => {
    const r = schema.safeParse(data);
    return r.success ? { value: r.data } : { error: new SchemaError(r.error.issues) };
  };

// Replies keep engine/json's BigInt-exact writer; the schema only shapes what goes out.
export const zodSerializerCompiler: FastifySerializerCompiler<z.ZodType> =
  ({ schema }) =>
  (data: unknown) =>
    stringifyJson(schema.parse(data));

/**
 * A route-level error handler: a SchemaError is answered by `render` (given the first issue),
 * anything else as the app answers errors.
 */
export function invalidAs(render: (reply: FastifyReply, issue: Issue) => FastifyReply) {
  return (err: FastifyError, req: FastifyRequest, reply: FastifyReply): void => {
    if (err instanceof SchemaError) void render(reply, err.issue);
    else handleError(err, req, reply);
  };
}

/** A custom issue carrying data for the route's renderer (a ComfyUI error type, details...). */
export function fail(ctx: z.RefinementCtx, message: string, params: Record<string, unknown> = {}): typeof z.NEVER {
  ctx.addIssue({ code: 'custom', message, params });
  return z.NEVER;
}

/** The params a `fail` attached to an issue ({} for zod's own issues). */
export function paramsOf(issue: Issue): Record<string, unknown> {
  return issue.code === 'custom' ? (issue.params ?? {}) : {};
}

// --- field types for what ComfyUI clients send ----------------------------------------------

/**
 * Any value, the key possibly absent: the start of a field whose transform decides (an object
 * key whose transform yields undefined must be optional on the way in for zod).
 */
export const anyValue = z.unknown().optional();

/**
 * A JSON body read as aiohttp handlers read it with .get(): anything that is not an object
 * (an array, a string, an empty body's {} aside) counts as {}; unknown keys are dropped.
 */
export function objectBody<S extends z.ZodRawShape>(shape: S) {
  return z.preprocess((v) => asObject(v), z.object(shape));
}

/** A string, else undefined (a number, a list of repeated query values). */
export const optString = anyValue.transform((v) => (typeof v === 'string' ? v : undefined));
/** A non-empty string, else undefined. */
export const optNonEmptyString = anyValue.transform((v) => (typeof v === 'string' && v !== '' ? v : undefined));
/** A string, else ''. */
export const stringOrEmpty = anyValue.transform((v) => (typeof v === 'string' ? v : ''));
/** JSON `true` only (ComfyUI tests `if json_data.get("clear")` against JSON booleans). */
export const jsonTrue = anyValue.transform((v) => v === true);
/** A query flag: "true" in any case. */
export const queryFlag = anyValue.transform((v) => typeof v === 'string' && v.toLowerCase() === 'true');
/** The strings of a list (other items skipped), or undefined when the key is absent; a non-list is []. */
export const optStringList = anyValue.transform((v) =>
  v === undefined ? undefined : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [],
);
/** An object, else {}. */
export const objectOrEmpty = anyValue.transform((v) => asObject(v));
/** A path parameter (fastify always supplies one; '' when empty). */
export const param = z.string().default('');
