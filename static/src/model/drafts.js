// Unsent composer text per conversation ('new' for a chat not created yet), kept in the tab's
// sessionStorage under one JSON key. The storage is passed in, so this runs anywhere.

export const DRAFTS_KEY = 'chatd.drafts';

/** The drafts key of the open conversation (null: a new chat). */
export const draftKey = (activeKey) => activeKey || 'new';

/** Every stored draft ({} when none or unreadable). */
export function readDrafts(storage) {
  try {
    const drafts = JSON.parse(storage.getItem(DRAFTS_KEY) || '{}');
    return drafts && typeof drafts === 'object' ? drafts : {};
  } catch {
    return {};
  }
}

/** The draft of one conversation ('' when none). */
export const draftOf = (storage, key) => readDrafts(storage)[key] || '';

/** Store (or, when empty, forget) the draft of one conversation. */
export function saveDraft(storage, key, text) {
  const drafts = readDrafts(storage);
  if (text) drafts[key] = text;
  else delete drafts[key];
  storage.setItem(DRAFTS_KEY, JSON.stringify(drafts));
}
