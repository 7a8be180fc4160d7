// The open conversation's message list. Order and membership are synced at once; content
// changes (a streaming reply) are batched into one render per animation frame. Scrolling sticks
// to the bottom only when the reader is already there.
import { E } from './elements.js';
import { focusComposer, renderComposer } from './composer.js';
import { buildTypingRow, updateMessage } from './message.js';
import { idKey } from '../model/ids.js';
import { awaitingReply, sortedMessages } from '../model/messages.js';
import { activeConv } from '../model/state.js';
import { icon } from '../util.js';

const NEAR_BOTTOM_PX = 120;
const NEAR_TOP_PX = 200;

const dom = new Map(); // message key -> <li> (open conversation only)
const dirty = new Set(); // message keys to re-render on the next frame
let renderScheduled = false;
let typingRowEl = null;
let handlers = { onRetry() {}, onRetryReply() {}, onNearTop() {} };

/** Whether the reader is at (or near) the newest message. */
export function isNearBottom() {
  const box = E.messages;
  return box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM_PX;
}

/** Whether older messages should be fetched: scrolled near the top, or the list does not fill the view. */
export function isNearTop() {
  const box = E.messages;
  return box.scrollTop < NEAR_TOP_PX || box.scrollHeight <= box.clientHeight + 10;
}

/** Scroll to the newest message (always when `force`, else only if the reader is near it). */
export function scrollToBottom(force) {
  const box = E.messages;
  if (force || isNearBottom()) box.scrollTop = box.scrollHeight;
  E.jumpBottom.hidden = true;
}

/** Run fn (which adds messages above) without moving what the reader sees. */
export function keepingScrollPlace(fn) {
  const box = E.messages;
  const fromBottom = box.scrollHeight - box.scrollTop;
  fn();
  box.scrollTop = box.scrollHeight - fromBottom;
}

// Render one message into its element (created on first render) and remember the element.
function render(state, m) {
  const key = idKey(m.id);
  const li = updateMessage(state, dom.get(key), m, handlers);
  dom.set(key, li);
  return li;
}

/** Queue messages of the open conversation for re-rendering on the next animation frame. */
export function markDirty(state, keys) {
  if (!keys.length) return;
  for (const k of keys) dirty.add(k);
  if (renderScheduled) return;
  renderScheduled = true;
  // A hidden tab gets no animation frames: render on a timer so it is current when shown.
  if (document.visibilityState === 'hidden') setTimeout(() => flushMessages(state), 100);
  else requestAnimationFrame(() => flushMessages(state));
}

/** Render the queued messages now. */
export function flushMessages(state) {
  renderScheduled = false;
  const c = activeConv(state);
  const keys = [...dirty];
  dirty.clear();
  if (!c) return;
  const stick = isNearBottom();
  for (const key of keys) {
    const m = c.messages.get(key);
    if (m) render(state, m);
  }
  if (stick) scrollToBottom(false);
  else if (keys.length) E.jumpBottom.hidden = false;
  renderComposer(state);
}

/** The optimistic copy became the stored message: its element now answers to the new key. */
export function moveMessage(from, to) {
  const li = dom.get(from);
  if (!li) return;
  dom.delete(from);
  dom.set(to, li);
  li.dataset.id = to;
}

/** Put the list's elements in the model's order (new ones rendered, gone ones removed). */
export function syncList(state, c) {
  if (c.key !== state.activeKey) return;
  const list = E.messageList;
  const sorted = sortedMessages(c);
  // Retry on a failed reply depends on the replies after it: refresh those (a no-op when unchanged).
  for (const m of sorted) if ((m.status === 'error' || m.status === 'interrupted') && dom.has(idKey(m.id))) render(state, m);
  const want = sorted.map((m) => dom.get(idKey(m.id)) || render(state, m));
  if (awaitingReply(c)) {
    typingRowEl ||= buildTypingRow(state, c.key);
    want.push(typingRowEl);
  }
  const stick = isNearBottom();
  for (let i = 0; i < want.length; i += 1) {
    if (list.children[i] !== want[i]) list.insertBefore(want[i], list.children[i] || null);
  }
  while (list.children.length > want.length) list.lastElementChild.remove();
  for (const [key, li] of dom) if (!li.isConnected) dom.delete(key);
  E.emptyState.hidden = want.length > 0 || !c.loaded;
  if (stick) scrollToBottom(false);
  renderComposer(state);
}

/** "Loading earlier messages…" / "Beginning of the conversation" above the list. */
export function renderHistoryStatus(c) {
  let text = '';
  if (c.loadingOlder) text = 'Loading earlier messages…';
  else if (c.loaded && !c.hasMore && c.messages.size > 0) text = 'Beginning of the conversation';
  E.historyStatus.textContent = text;
}

/** Say that the first page of a conversation is on its way. */
export function showHistoryLoading() {
  E.historyStatus.textContent = 'Loading messages…';
}

/** Rebuild the pane for the conversation now open (or the empty new-chat state). */
export function renderMessagesPane(state) {
  dom.clear();
  dirty.clear();
  E.messageList.replaceChildren();
  typingRowEl = null;
  const c = activeConv(state);
  const missing = !c && state.missingKey !== null;
  E.emptyState.hidden = !!c || missing;
  E.missingState.hidden = !missing;
  E.historyStatus.textContent = '';
  if (c) {
    syncList(state, c);
    flushMessages(state);
    scrollToBottom(true);
    renderHistoryStatus(c);
  }
}

/** Forget every rendered message (signing out). */
export function clearMessages() {
  dom.clear();
  E.messageList.replaceChildren();
}

/**
 * Wire the list: onRetry(message) resends a failed send, onRetryReply(message) asks again for a
 * failed reply, onNearTop() when older messages may be needed, onNewChat() from "not found".
 */
export function bindMessages({ onRetry, onRetryReply, onNearTop, onNewChat }) {
  handlers = { onRetry, onRetryReply, onNearTop };
  E.missingNewChat.addEventListener('click', () => onNewChat());
  E.jumpBottom.append(icon('down'));
  E.jumpBottom.addEventListener('click', () => { scrollToBottom(true); focusComposer(); });
  E.messages.addEventListener('scroll', () => {
    if (isNearBottom()) E.jumpBottom.hidden = true;
    onNearTop();
  }, { passive: true });
}
