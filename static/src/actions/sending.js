// Sending messages (optimistic copy, resend after a reconnect, Retry) and stopping a reply.
import { app, online, update } from './app.js';
import { selectConversation } from './conversations.js';
import { clearNewChatDraft, saveCurrentDraft } from './drafts.js';
import { stopTyping } from './typing.js';
import { upsertConversation } from '../model/conversations.js';
import { errorText } from '../model/frames.js';
import { idKey } from '../model/ids.js';
import { canRetryReply, markRetrying, retryReplyData, streamingReply } from '../model/messages.js';
import { beginSend, endSend, markAcked, markFailed, queueSend, requeueFailed, sendData } from '../model/pending.js';
import { activeConv } from '../model/state.js';
import { composerText, holdSend, renderComposer, setComposerText } from '../views/composer.js';
import { pickedAssistant } from '../views/header.js';
import { toast } from '../views/toasts.js';
import { randomId } from '../util.js';

// The conversation to send into: the open one, or a new one created for this first message.
async function targetConversation(assistantId) {
  const c = activeConv(app.state);
  if (c) return c;
  holdSend();
  try {
    const res = await app.api.post('api/v1/conversations', assistantId ? { assistant_id: assistantId } : {});
    update((state, ch) => upsertConversation(state, res.conversation, ch));
    await selectConversation(res.conversation.id, { focus: true, replace: true });
    return activeConv(app.state);
  } catch (err) {
    toast(`Could not start a conversation: ${err.message}`, 'error');
    renderComposer(app.state);
    return null;
  }
}

/** Send the composer's text (Enter or Send): shown at once, confirmed by the server's echo. */
export async function submitComposer() {
  const state = app.state;
  const text = composerText();
  if (!text.trim() || !online() || streamingReply(activeConv(state))) return;
  const assistantId = pickedAssistant() || state.defaultAssistant || undefined;
  const c = await targetConversation(assistantId);
  if (!c) return;
  setComposerText(state, '');
  clearNewChatDraft();
  saveCurrentDraft();
  stopTyping(false);
  const clientMsgId = randomId();
  update((s, ch) => queueSend(s, c, { clientMsgId, text, assistantId }, ch));
  sendPending(clientMsgId);
}

/** Send (or resend, with the same client_msg_id) a queued message; a refusal marks it "Not sent". */
export async function sendPending(clientMsgId) {
  if (!online()) return;
  const entry = beginSend(app.state, clientMsgId);
  if (!entry) return;
  try {
    await app.socket.request('send_message', sendData(clientMsgId, entry));
    markAcked(app.state, clientMsgId);
  } catch (err) {
    if (err.disconnected || err.code === 'TIMEOUT') return; // resent (same client_msg_id) after the reconnect
    // Shown once, on the message itself (with Retry): no toast besides.
    update((state, ch) => markFailed(state, clientMsgId, errorText(err.data || { message: err.message, code: err.code }), ch));
  } finally {
    endSend(app.state, clientMsgId);
  }
}

/** Send several queued messages (after a reconnect or a rejoin). */
export function sendAll(ids) {
  for (const id of ids) sendPending(id);
}

/** Retry a message that was refused: sent again with its client_msg_id, so it is stored once. */
export function retryMessage(m) {
  const c = activeConv(app.state);
  if (!c) return;
  const clientMsgId = update((state, ch) => requeueFailed(state, c, idKey(m.id), ch));
  if (clientMsgId) sendPending(clientMsgId);
}

/** Retry a reply that failed: a new reply to the same message (`stream_response`); a refusal shows on it. */
export async function retryReply(m) {
  const c = activeConv(app.state);
  const key = idKey(m.id);
  if (!c || !online() || !canRetryReply(c, c.messages.get(key))) return;
  update((state, ch) => markRetrying(c, key, true, ch));
  try {
    await app.socket.request('stream_response', retryReplyData(m));
  } catch (err) {
    update((state, ch) => markRetrying(c, key, false, ch, errorText(err.data || { message: err.message, code: err.code })));
  }
}

/** Ask the server to stop the reply being written (Stop or Esc). */
export function stopGeneration() {
  const m = streamingReply(activeConv(app.state));
  if (!m || !online()) return;
  app.socket.request('stop_generation', { message_id: m.id }).catch((err) => {
    if (!err.disconnected) toast(`Could not stop: ${err.message}`, 'error');
  });
}
