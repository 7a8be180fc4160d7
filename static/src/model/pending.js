// Messages we sent that the server has not echoed back yet. Each carries a client_msg_id, so a
// send repeated after a reconnect is stored once (the server is idempotent on it), and the echo
// (message_received with the same client_msg_id) replaces the optimistic copy.
import { meId } from './state.js';

/**
 * Queue a message: an optimistic copy shows at once ("Sending…") and the send is remembered
 * until the server's echo claims it. Returns the queued entry.
 */
export function queueSend(state, c, { clientMsgId, text, assistantId }, ch) {
  const key = `tmp-${clientMsgId}`;
  c.messages.set(key, {
    id: key, conversation_id: c.id, content: text, message_type: 'user', sender_id: meId(state), status: 'complete',
    client_msg_id: clientMsgId, seq: null, _optimistic: true, _ins: ++c.insertSeq,
  });
  const entry = { conversation_id: c.id, content: text, assistant_id: assistantId, key, convKey: c.key };
  state.pending.set(clientMsgId, entry);
  ch.list(c.key).composer = true;
  ch.scroll.add(c.key);
  return entry;
}

/** The send_message data for a queued send. */
export function sendData(clientMsgId, entry) {
  const data = { conversation_id: entry.conversation_id, content: entry.content, message_type: 'user', client_msg_id: clientMsgId };
  if (entry.assistant_id) data.assistant_id = entry.assistant_id;
  return data;
}

/** Start sending a queued message; returns its entry, or null if unknown or already on the way. */
export function beginSend(state, clientMsgId) {
  const entry = state.pending.get(clientMsgId);
  if (!entry || entry.inflight) return null;
  entry.inflight = true;
  return entry;
}

/** The send ended without an answer (disconnect, timeout): it may be sent again. */
export function endSend(state, clientMsgId) {
  const entry = state.pending.get(clientMsgId);
  if (entry) entry.inflight = false;
}

/** The server acked (stored) the message: no resend needed, the echo still replaces the copy. */
export function markAcked(state, clientMsgId) {
  const entry = state.pending.get(clientMsgId);
  if (entry) entry.acked = true;
}

/**
 * The server refused the message: it stays shown, marked "Not sent" with a Retry button (the
 * one place the error shows). The send is kept on the message so Retry repeats it exactly.
 */
export function markFailed(state, clientMsgId, reason, ch) {
  const entry = state.pending.get(clientMsgId);
  if (!entry) return;
  state.pending.delete(clientMsgId);
  const m = state.convs.get(entry.convKey)?.messages.get(entry.key);
  if (m) {
    m._failed = reason;
    m._send = { clientMsgId, entry: { ...entry, inflight: false, acked: false } };
    ch.message(entry.convKey, entry.key);
  }
}

/**
 * Retry a refused message: queued again under the same client_msg_id (the server stores it
 * once even if an earlier try did reach it). Returns that id, or null if it cannot be retried.
 */
export function requeueFailed(state, c, key, ch) {
  const m = c.messages.get(key);
  if (!m || !m._failed || !m._send) return null;
  const { clientMsgId, entry } = m._send;
  delete m._failed;
  delete m._send;
  state.pending.set(clientMsgId, { ...entry });
  ch.message(c.key, key).composer = true;
  return clientMsgId;
}

/** The server's echo arrived: forget the send and return it (null if it was not ours). */
export function claimPending(state, clientMsgId) {
  const entry = state.pending.get(clientMsgId);
  if (!entry) return null;
  state.pending.delete(clientMsgId);
  return entry;
}

/** client_msg_ids of a conversation's sends not yet acked: resent once it is joined again. */
export function unackedIn(state, convKey) {
  return [...state.pending].filter(([, p]) => p.convKey === convKey && !p.acked).map(([id]) => id);
}

/** client_msg_ids of every send outside a conversation (resent right after a reconnect). */
export function pendingOutside(state, convKey) {
  return [...state.pending].filter(([, p]) => convKey === null || p.convKey !== convKey).map(([id]) => id);
}
