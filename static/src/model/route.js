// The page's URL: each conversation has its own (`#/c/ID`), a new chat is `#/`. A hash route
// works under any base path (chatd behind a proxy prefix) and needs nothing from the server.

const CONVERSATION = /^#\/c\/([^/?#]+)\/?$/;

/** The conversation key a location hash names, or null (a new chat, or a hash that is no route). */
export function parseRoute(hash) {
  const m = CONVERSATION.exec(hash || '');
  if (!m) return null;
  try {
    const key = decodeURIComponent(m[1]);
    return key.trim() ? key : null;
  } catch {
    return null; // malformed %-escape
  }
}

/** Whether a location hash is one of the page's routes (else it is left alone, e.g. a skip link). */
export const isRoute = (hash) => !hash || hash === '#' || hash === '#/' || CONVERSATION.test(hash);

/** The hash for a conversation key (null: a new chat). */
export const routeFor = (key) => (key === null || key === undefined ? '#/' : `#/c/${encodeURIComponent(key)}`);
