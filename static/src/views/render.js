// The one place a ChangeSet turns into DOM updates: each view re-renders only what changed.
import { renderComposer, restoreDraft } from './composer.js';
import { renderHeader } from './header.js';
import { markDirty, moveMessage, renderMessagesPane, scrollToBottom, syncList } from './messages.js';
import { renderSidebar } from './sidebar.js';
import { toast } from './toasts.js';
import { renderTypers } from './typing.js';
import { activeConv } from '../model/state.js';

/** Rebuild everything that depends on which conversation is open. */
export function renderActive(state) {
  renderHeader(state);
  renderSidebar(state);
  renderMessagesPane(state);
  renderTypers(state);
  restoreDraft(state);
  renderComposer(state);
}

// Changes inside the open conversation: moved elements first (so they are reused), content
// queued for the next frame, then order and membership at once.
function renderOpenConversation(state, ch) {
  const c = activeConv(state);
  if (!c) return;
  for (const m of ch.moved) if (m.convKey === c.key) moveMessage(m.from, m.to);
  markDirty(state, ch.messagesOf(c.key));
  if (ch.lists.has(c.key)) syncList(state, c);
  if (ch.scroll.has(c.key)) scrollToBottom(true);
  if (ch.typing.has(c.key)) renderTypers(state);
}

/** Bring the page up to date with what a model update changed. */
export function render(state, ch) {
  for (const n of ch.notices) toast(n.text, n.kind);
  if (ch.reset) renderActive(state);
  else {
    renderOpenConversation(state, ch);
    if (ch.header) renderHeader(state);
  }
  if (ch.sidebar) renderSidebar(state);
  if (ch.composer) renderComposer(state);
}
