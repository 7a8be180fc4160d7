// Replies being written. Each stream keeps its text and the index of the last chunk it holds,
// so a chunk seen twice (replay, snapshot, duplicate delivery) is never shown twice, and a
// snapshot from `joined.active_streams` lets the text continue after a reconnect.
import { idKey } from './ids.js';

/** The stream of a reply, created empty (no chunk yet: index -1) on first use. */
export function streamOf(c, messageId) {
  const key = idKey(messageId);
  let s = c.streams.get(key);
  if (!s) { s = { text: '', index: -1 }; c.streams.set(key, s); }
  return s;
}

/**
 * Take a `joined.active_streams` entry: its text runs up to chunk `index`, and live chunks
 * continue from index + 1. A snapshot older than what we hold is ignored.
 */
export function applySnapshot(c, reply, snap, ch) {
  const s = streamOf(c, snap.message_id);
  const content = snap.content || '';
  if (snap.index > s.index || (snap.index === s.index && content.length > s.text.length)) {
    s.text = content;
    s.index = snap.index;
  }
  reply.content = s.text;
  ch.message(c.key, idKey(snap.message_id));
}

/**
 * Append a stream_content chunk unless we already have it (index ≤ the last one held) or the
 * reply already finished (its stored copy arrived first). Returns whether the text grew.
 */
export function appendChunk(c, reply, chunk, ch) {
  if (reply.status !== 'streaming') return false;
  const s = streamOf(c, chunk.message_id);
  const index = typeof chunk.index === 'number' ? chunk.index : s.index + 1;
  if (index <= s.index) return false; // never show text twice
  s.text += chunk.content || '';
  s.index = index;
  reply.content = s.text;
  ch.message(c.key, idKey(chunk.message_id));
  return true;
}

/** Finish a reply on stream_complete (a stop counts as cancelled); the assistant is done typing. */
export function completeStream(c, data, ch) {
  const key = idKey(data.message_id);
  const m = c.messages.get(key);
  if (m) {
    m.usage = data.usage || m.usage;
    m.finish_reason = data.finish_reason;
    if (m.status === 'streaming') m.status = data.finish_reason === 'cancelled' ? 'cancelled' : 'complete';
    ch.message(c.key, key);
  }
  c.assistantTyping = false;
  ch.composer = true;
}

/** End a reply on stream_error (CANCELLED is a stop, not a failure). */
export function failStream(c, data, ch) {
  const key = idKey(data.message_id);
  const m = c.messages.get(key);
  if (m) {
    m.status = data.code === 'CANCELLED' ? 'cancelled' : 'error';
    m.error = data.message;
    ch.message(c.key, key);
  }
  c.assistantTyping = false;
  ch.composer = true;
}
