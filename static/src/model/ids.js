// Ids as map keys. The server's ids may be numbers or strings; the page keys everything by string.

/** The string key of an id, so 7 and "7" name the same thing ('' for none). */
export const idKey = (id) => (id === null || id === undefined ? '' : String(id));
