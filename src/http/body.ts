import type { Context } from 'koa';

/**
 * A request body of this content type, read no further than `limit` characters: undefined when
 * it is of another type or longer (what such a request sends is not worth reading to its end).
 */
export async function readBody(ctx: Context, type: string, limit: number): Promise<string | undefined> {
  if (!ctx.is(type)) return undefined;
  let text = '';
  for await (const chunk of ctx.req) {
    text += chunk;
    if (text.length > limit) return undefined;
  }
  return text;
}
