// Fixtures for the model tests (kept outside test/, where node --test would run them as a test file).
import { applyFrame } from '../src/model/frames.js';
import { sortedMessages } from '../src/model/messages.js';
import { createState } from '../src/model/state.js';

export const ME = 7;
export const OTHER = 9;
export const CID = 42;
export const KEY = '42';

/** A signed-in model (user 7) with conversation 42 open, like after selecting it. */
export function signedInState({ open = true } = {}) {
  const state = createState();
  state.session = { token: 't', user: { id: ME, username: 'me' }, expiresAt: null };
  state.connection = 'online';
  state.assistants = [{ id: 'demo', name: 'Demo', default: true }, { id: 'other', name: 'Other' }];
  state.defaultAssistant = 'demo';
  state.conversations.set(KEY, { id: CID, title: 'Chat', assistant_id: 'demo', updated_at: '2024-01-01T00:00:00Z' });
  if (open) state.activeKey = KEY;
  return state;
}

/** Apply a frame of `type` with `data`. */
export const frame = (state, type, data = {}, opts = {}) => applyFrame(state, { type, data }, opts);

/** A stored message as the server sends it. */
export function stored(id, seq, fields = {}) {
  return { id, conversation_id: CID, seq, content: `m${id}`, message_type: 'user', sender_id: OTHER, status: 'complete', ...fields };
}

/** A stored assistant reply. */
export const reply = (id, seq, fields = {}) => stored(id, seq, { message_type: 'assistant', sender_id: null, assistant_id: 'demo', ...fields });

/** Stream frames for reply `id`: start, then one stream_content per chunk with indexes 0, 1, … */
export function streamChunks(state, id, chunks, { from = 0, replyTo } = {}) {
  if (from === 0) frame(state, 'stream_start', { conversation_id: CID, message_id: id, assistant_id: 'demo', reply_to: replyTo });
  chunks.forEach((content, i) => frame(state, 'stream_content', { conversation_id: CID, message_id: id, content, index: from + i }));
}

/** The ids of a conversation's messages in display order. */
export const orderOf = (state, key = KEY) => sortedMessages(state.convs.get(key)).map((m) => m.id);

/** An in-memory sessionStorage. */
export class MemoryStorage {
  constructor(items = {}) { this.items = new Map(Object.entries(items)); }
  getItem(k) { return this.items.has(k) ? this.items.get(k) : null; }
  setItem(k, v) { this.items.set(k, String(v)); }
  removeItem(k) { this.items.delete(k); }
}
