// Messages of one conversation: ordered by seq (a reply without a seq yet sits right after the
// message it answers), merged by id, with our own optimistic copies replaced by the stored ones.
import { idKey } from './ids.js';
import { claimPending } from './pending.js';

const LAST = Number.MAX_SAFE_INTEGER;

// [seq, 0|1, arrival]: a stored message by its seq; a reply still streaming right after its
// parent (and the parent's earlier replies); anything else (an optimistic send) last, in the order it arrived.
function sortKey(c, m) {
  if (typeof m.seq === 'number') return [m.seq, 0, 0];
  if (m.reply_to !== undefined && m.reply_to !== null) {
    const parent = c.messages.get(idKey(m.reply_to));
    if (parent && typeof parent.seq === 'number') {
      // After its parent and after the parent's stored replies (a retry follows the failed reply).
      let after = parent.seq;
      for (const x of c.messages.values()) {
        if (typeof x.seq === 'number' && x.seq > after && x.reply_to !== undefined && x.reply_to !== null
            && idKey(x.reply_to) === idKey(m.reply_to)) after = x.seq;
      }
      return [after, 1, m._ins || 0];
    }
  }
  return [LAST, 0, m._ins || 0];
}

/** The messages of a conversation in display order. */
export function sortedMessages(c) {
  const arr = [...c.messages.values()];
  const keys = new Map(arr.map((m) => [m, sortKey(c, m)]));
  return arr.sort((a, b) => {
    const ka = keys.get(a);
    const kb = keys.get(b);
    return ka[0] - kb[0] || ka[1] - kb[1] || ka[2] - kb[2];
  });
}

// The optimistic copy (if any) that a stored message with this client_msg_id replaces.
function optimisticKeysFor(state, c, clientMsgId) {
  if (!clientMsgId) return [];
  const p = claimPending(state, clientMsgId);
  if (p) return c.messages.has(p.key) ? [p.key] : [];
  // Sent by another tab (or before a reload): a local optimistic copy with the same id.
  return [...c.messages].filter(([, m]) => m._optimistic && m.client_msg_id === clientMsgId).map(([k]) => k);
}

/**
 * Merge a stored message (history, replay or live) into the conversation; returns the merged
 * message. Our own optimistic copy becomes it (reported in `ch.moved`, so the view keeps the
 * same element: no flicker); a finished reply's stored text replaces the streamed one.
 */
export function upsertMessage(state, c, message, ch) {
  const key = idKey(message.id);
  for (const old of optimisticKeysFor(state, c, message.client_msg_id)) {
    c.messages.delete(old);
    ch.moved.push({ convKey: c.key, from: old, to: key });
  }
  const prev = c.messages.get(key);
  const merged = { ...(prev || {}), ...message, _ins: prev?._ins ?? ++c.insertSeq };
  delete merged._optimistic;
  delete merged._failed;
  if (merged.message_type === 'assistant') {
    const s = c.streams.get(key);
    if (merged.status === 'streaming') {
      // History (checkpointed text) or replay: keep the longer, live text if we have it.
      if (s && s.text.length >= (merged.content || '').length) merged.content = s.text;
    } else if (s) {
      c.streams.delete(key); // finished: the stored text is the truth
    }
    if (prev && prev.usage && !merged.usage) merged.usage = prev.usage;
  }
  c.messages.set(key, merged);
  if (typeof merged.seq === 'number') c.lastSeq = Math.max(c.lastSeq, merged.seq);
  ch.message(c.key, key).list(c.key);
  return merged;
}

/** Whether a live message frame repeats what we hold (same seq and status): nothing to do. */
export function isRepeat(c, message) {
  const prev = c.messages.get(idKey(message.id));
  return !!prev && typeof prev.seq === 'number' && prev.seq === message.seq && prev.status === message.status;
}

/**
 * The reply message a stream writes into, created empty ("typing") when the stream is the first
 * we hear of it. `fallbackAssistant` names the assistant when the frame does not.
 */
export function ensureReply(c, messageId, { assistant_id, reply_to, fallbackAssistant = null } = {}, ch) {
  const key = idKey(messageId);
  let m = c.messages.get(key);
  if (!m) {
    m = {
      id: messageId, conversation_id: c.id, content: '', message_type: 'assistant', sender_id: null,
      status: 'streaming', assistant_id: assistant_id || fallbackAssistant, reply_to, seq: null, _ins: ++c.insertSeq,
    };
    c.messages.set(key, m);
    ch.list(c.key);
  } else {
    if (assistant_id) m.assistant_id = assistant_id;
    if (reply_to !== undefined) m.reply_to = reply_to;
  }
  return m;
}

/** The reply of this conversation that is still being written, if any. */
export function streamingReply(c) {
  if (!c) return null;
  for (const m of c.messages.values()) if (m.message_type === 'assistant' && m.status === 'streaming') return m;
  return null;
}

/** Whether the assistant said it is typing but its reply has not started: show a typing row. */
export const awaitingReply = (c) => !!c && c.assistantTyping && !streamingReply(c);

/** Merge the newest page of history; the conversation counts as loaded afterwards. */
export function addNewestPage(state, c, msgs, pageSize, ch) {
  c.hasMore = msgs.filter((m) => m.seq !== null && m.seq !== undefined).length >= pageSize;
  for (const m of msgs) upsertMessage(state, c, m, ch);
  c.loaded = true;
  ch.list(c.key);
}

/** Merge an older page of history (asked for with `before_seq`). */
export function addOlderPage(state, c, msgs, pageSize, ch) {
  c.hasMore = msgs.length >= pageSize;
  for (const m of msgs) upsertMessage(state, c, m, ch);
  ch.list(c.key);
}

/** The lowest seq held (where the next older page ends), or null when none has a seq. */
export function oldestSeq(c) {
  const seqs = [...c.messages.values()].map((m) => m.seq).filter((s) => typeof s === 'number');
  return seqs.length ? Math.min(...seqs) : null;
}

/**
 * Replies that were streaming when we lost track and that neither the replay nor the stored
 * history finished: they ended without us (the server restarted), so show them as interrupted.
 */
export function markInterrupted(c, messageKeys, ch) {
  for (const key of messageKeys) {
    const cur = c.messages.get(key);
    if (cur && cur.status === 'streaming' && !c.streams.has(key)) {
      cur.status = 'interrupted';
      ch.message(c.key, key);
    }
  }
  ch.list(c.key).composer = true;
}

/** Remove a message that failed to send (its text goes back into the composer). */
export function dropMessage(c, messageKey, ch) {
  c.messages.delete(messageKey);
  ch.list(c.key).composer = true;
}

/** The conversation a frame without a conversation id belongs to (by message id). */
export function conversationOfMessage(state, messageId) {
  const key = idKey(messageId);
  for (const c of state.convs.values()) if (c.messages.has(key) || c.streams.has(key)) return c;
  return state.activeKey ? state.convs.get(state.activeKey) || null : null;
}

const RETRYABLE = new Set(['error', 'interrupted']);

/**
 * Whether a failed (or interrupted) reply offers Retry: it is the newest reply to its message,
 * no reply is being written, and it is not being retried already.
 */
export function canRetryReply(c, m) {
  if (!c || !m || m.message_type !== 'assistant' || !RETRYABLE.has(m.status) || m._retrying) return false;
  if (m.reply_to === undefined || m.reply_to === null || streamingReply(c)) return false;
  const list = sortedMessages(c);
  const later = list.slice(list.indexOf(m) + 1);
  return !later.some((x) => x.message_type === 'assistant' && idKey(x.reply_to) === idKey(m.reply_to));
}

/** The stream_response data that asks again for a failed reply (a new reply to the same message). */
export function retryReplyData(m) {
  const data = { conversation_id: m.conversation_id, message_id: m.reply_to };
  if (m.assistant_id) data.assistant_id = m.assistant_id;
  return data;
}

/** Retry was pressed (`on`) or refused (`on` false, with the refusal as the reply's error). */
export function markRetrying(c, key, on, ch, error = null) {
  const m = c.messages.get(key);
  if (!m) return;
  m._retrying = on;
  if (error) m.error = error;
  ch.message(c.key, key).composer = true;
}
