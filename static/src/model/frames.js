// applyFrame: the one place where server frames change the model. It returns a ChangeSet saying
// what changed (for the views) and which requests to make next (effects, for the actions); it
// never touches the DOM or the network, so every frame's effect is unit-tested in Node.
import { fallbackAssistant } from './assistants.js';
import { ChangeSet } from './changes.js';
import { upsertConversation } from './conversations.js';
import { idKey } from './ids.js';
import { conversationOfMessage, ensureReply, isRepeat, upsertMessage } from './messages.js';
import { markAcked, pendingOutside, unackedIn } from './pending.js';
import { activeConv, convState, isMe } from './state.js';
import { appendChunk, applySnapshot, completeStream, failStream, streamOf } from './streams.js';
import { noteTyper } from './typing.js';

/** The words for a server error frame. */
export function errorText(d) {
  if (d.code === 'RATE_LIMITED') return `Slow down: try again in ${d.retry_after ?? 'a few'} s.`;
  return d.message || d.code || 'Something went wrong';
}

// (Re)connected: rejoin the open conversation from where we were, resend other conversations'
// unconfirmed messages, and refresh the sidebar (conversations may have changed meanwhile).
function onAuthSuccess(state, d, ch) {
  const c = activeConv(state);
  if (c) ch.effect('join', { convKey: c.key });
  const resend = pendingOutside(state, c ? c.key : null);
  if (resend.length) ch.effect('send', { ids: resend });
  ch.effect('refreshConversations');
}

// The replay of everything after since_seq came before this; `active_streams` carries the text
// so far of each reply still being written.
function onJoined(state, c, d, ch) {
  c.joining = false;
  c.joined = state.activeKey === c.key;
  if (typeof d.seq === 'number') c.lastSeq = Math.max(c.lastSeq, d.seq);
  const live = new Set();
  for (const snap of d.active_streams || []) {
    live.add(idKey(snap.message_id));
    const reply = ensureReply(c, snap.message_id, { fallbackAssistant: fallbackAssistant(state, c.key) }, ch);
    applySnapshot(c, reply, snap, ch);
  }
  // A reply we saw streaming that is neither live nor finished by the replay ended while we were
  // away without us hearing of it: the actions fetch the stored truth.
  const stale = [...c.messages.values()].filter((m) => m.status === 'streaming' && !live.has(idKey(m.id))).map((m) => idKey(m.id));
  if (stale.length) ch.effect('refreshTail', { convKey: c.key, stale });
  const resend = unackedIn(state, c.key);
  if (resend.length) ch.effect('send', { ids: resend });
  ch.list(c.key).composer = true;
}

function onMessage(state, c, d, ch, type) {
  const msg = d.message;
  if (type === 'message_received' && isRepeat(c, msg)) return; // replayed copy of what we hold
  upsertMessage(state, c, msg, ch);
  if (msg.message_type === 'assistant' && msg.status !== 'streaming') c.assistantTyping = false;
  if (isMe(state, msg.sender_id)) ch.scroll.add(c.key);
}

function onStreamStart(state, c, d, ch) {
  ensureReply(c, d.message_id, { assistant_id: d.assistant_id, reply_to: d.reply_to, fallbackAssistant: fallbackAssistant(state, c.key) }, ch);
  streamOf(c, d.message_id);
  ch.message(c.key, idKey(d.message_id)).list(c.key);
}

function onStreamContent(state, c, d, ch) {
  const reply = ensureReply(c, d.message_id, { fallbackAssistant: fallbackAssistant(state, c.key) }, ch);
  appendChunk(c, reply, d, ch);
}

// The failed reply shows its error (and Retry) in place: no toast besides, one error shown once.
function onStreamError(state, c, d, ch) {
  failStream(c, d, ch);
}

function onTyping(state, c, d, ch, now) {
  if (d.user_id === 'assistant') {
    c.assistantTyping = !!d.is_typing; // shows a typing row until the reply starts
    ch.list(c.key);
    return;
  }
  if (isMe(state, d.user_id)) return;
  noteTyper(c, idKey(d.user_id), !!d.is_typing, now);
  ch.typing.add(c.key);
}

// Frames about one conversation, found by conversation id or, for stream frames, by message id.
const CONVERSATION_FRAMES = {
  joined: onJoined,
  message_received: (state, c, d, ch) => onMessage(state, c, d, ch, 'message_received'),
  message_added: (state, c, d, ch) => onMessage(state, c, d, ch, 'message_added'),
  stream_start: onStreamStart,
  stream_content: onStreamContent,
  stream_complete: (state, c, d, ch) => completeStream(c, d, ch),
  stream_error: onStreamError,
  typing_indicator: onTyping,
};

function conversationOfFrame(state, d) {
  const cid = d.conversation_id ?? d.message?.conversation_id ?? d.conversation?.id;
  return cid !== undefined && cid !== null ? convState(state, cid) : conversationOfMessage(state, d.message_id);
}

/**
 * Apply one server frame to the model. `now` (ms) dates typing indicators. Returns a ChangeSet:
 * what the views must re-render and which effects ({type: 'join'|'send'|'refreshTail'|
 * 'refreshConversations', …}) the actions must carry out. Unknown frame types change nothing.
 */
export function applyFrame(state, frame, { now = Date.now() } = {}) {
  const ch = new ChangeSet();
  const d = frame.data || {};
  switch (frame.type) {
    case 'auth_success':
      onAuthSuccess(state, d, ch);
      return ch;
    case 'conversation_updated':
      if (d.conversation) upsertConversation(state, d.conversation, ch);
      return ch;
    case 'ack':
      // send_message's ack names the client_msg_id: stored, so no resend after a reconnect.
      if (d.client_msg_id) markAcked(state, d.client_msg_id);
      return ch;
    case 'pong':
      return ch;
    case 'error':
      // An error answering a request (ref) is reported by whoever made it.
      if (d.ref === undefined) ch.notice(errorText(d), 'error');
      return ch;
    default:
      break;
  }
  const handle = CONVERSATION_FRAMES[frame.type];
  if (!handle) return ch;
  const c = conversationOfFrame(state, d);
  if (c) handle(state, c, d, ch, now);
  return ch;
}
