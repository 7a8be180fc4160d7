// Opening, loading, joining, paging, renaming and deleting conversations.
import { app, commit, online, persistActive, update } from './app.js';
import { saveCurrentDraft } from './drafts.js';
import { stopTyping } from './typing.js';
import { ChangeSet } from '../model/changes.js';
import {
  leaveActive, mergeConversationList, openConversation, openMissing, openNewChat, removeConversation, upsertConversation,
} from '../model/conversations.js';
import { idKey } from '../model/ids.js';
import { addNewestPage, addOlderPage, markInterrupted, oldestSeq, upsertMessage } from '../model/messages.js';
import { isRoute, parseRoute } from '../model/route.js';
import { activeConv } from '../model/state.js';
import { focusComposer } from '../views/composer.js';
import { syncPicker } from '../views/header.js';
import {
  flushMessages, isNearTop, keepingScrollPlace, renderHistoryStatus, scrollToBottom, showHistoryLoading, syncList,
} from '../views/messages.js';
import { closeSidebar } from '../views/sidebar.js';
import { toast } from '../views/toasts.js';

const PAGE_SIZE = 50;
const OLDER_PAGE = 30;
export const LIST_LIMIT = 100;

const messagesUrl = (cid, query) => `api/v1/conversations/${encodeURIComponent(cid)}/messages?${query}`;
const conversationUrl = (cid) => `api/v1/conversations/${encodeURIComponent(cid)}`;

// End the open conversation's subscription (and our typing indicator) before switching.
function leave() {
  stopTyping();
  const left = leaveActive(app.state);
  if (left && online()) app.socket.send('leave_conversation', { conversation_id: left.id });
}

/**
 * Open a conversation: show what we have, load its newest page, then join it for live frames.
 * Its URL becomes a new history entry, or (`replace`: the new chat it was created from) takes
 * the current one, so Back goes to the conversation before.
 */
export async function selectConversation(cid, { focus = true, replace = false } = {}) {
  const key = idKey(cid);
  if (key === app.state.activeKey) { closeSidebar(); return; }
  saveCurrentDraft();
  leave();
  const c = update((state, ch) => openConversation(state, cid, ch));
  persistActive(key, { replace });
  closeSidebar();
  if (focus) focusComposer();
  await ensureLoaded(c);
  if (app.state.activeKey !== key) return;
  if (online()) joinConversation(c);
}

/** Start a new, not yet created chat (created by its first message). */
export function newChat() {
  leave();
  update((state, ch) => openNewChat(state, ch));
  persistActive(null);
  closeSidebar();
  focusComposer();
}

/**
 * Open what a URL hash names (reload, Back/Forward, a bookmark): `#/c/ID` or `#/` for a new chat.
 * A conversation missing from the sidebar is asked for; one the server does not show us is
 * reported on the page. A hash that is no route (a skip link) changes nothing.
 */
export async function openRoute(hash, { focus = true } = {}) {
  const state = app.state;
  if (!state.session || !isRoute(hash)) return;
  const key = parseRoute(hash);
  if (key === null) {
    if (state.activeKey !== null || state.missingKey !== null) newChat();
    return;
  }
  if (key === state.activeKey || key === state.missingKey) return;
  const known = state.conversations.get(key);
  if (known) { await selectConversation(known.id, { focus }); return; }
  try {
    const res = await app.api.get(conversationUrl(key));
    update((s, ch) => upsertConversation(s, res.conversation, ch));
    await selectConversation(res.conversation.id, { focus });
  } catch (err) {
    if (err.status === 404 || err.status === 403 || err.status === 400 || err.status === 422) {
      leave();
      update((s, ch) => openMissing(s, key, ch));
    } else {
      toast(`Could not open the conversation: ${err.message}`, 'error');
    }
  }
}

/** Load a conversation's newest page once (concurrent callers share the request). */
export async function ensureLoaded(c) {
  if (c.loaded) return;
  if (!c.loading) {
    c.loading = (async () => {
      showHistoryLoading();
      try {
        const res = await app.api.get(messagesUrl(c.id, `limit=${PAGE_SIZE}`));
        update((state, ch) => addNewestPage(state, c, res.messages || [], PAGE_SIZE, ch));
      } catch (err) {
        if (err.status === 404 || err.status === 403) update((state, ch) => removeConversation(state, c.key, ch));
        else toast(`Could not load messages: ${err.message}`, 'error');
      } finally {
        c.loading = null;
      }
    })();
  }
  await c.loading;
  if (c.key === app.state.activeKey) {
    syncList(app.state, c);
    scrollToBottom(true);
    renderHistoryStatus(c);
    maybeLoadOlder();
  }
}

/** Subscribe to a conversation from the last seq we hold; the replay and `joined` follow as frames. */
export async function joinConversation(c) {
  if (!online() || c.joining) return;
  if (!c.loaded) { await ensureLoaded(c); if (!c.loaded || app.state.activeKey !== c.key) return; }
  c.joining = true;
  try {
    await app.socket.request('join_conversation', { conversation_id: c.id, since_seq: c.lastSeq });
  } catch (err) {
    c.joining = false;
    if (err.code === 'NOT_FOUND' || err.code === 'FORBIDDEN') update((state, ch) => removeConversation(state, c.key, ch));
    else if (!err.disconnected) toast(`Could not open the conversation: ${err.message}`, 'error');
  }
}

/** Fetch the stored newest page for replies that ended while we were away; unfinished ones are interrupted. */
export async function refreshTail(c, staleKeys) {
  const ch = new ChangeSet();
  try {
    const res = await app.api.get(messagesUrl(c.id, `limit=${PAGE_SIZE}`));
    for (const m of res.messages || []) upsertMessage(app.state, c, m, ch);
  } catch { /* keep what we have */ }
  markInterrupted(c, staleKeys, ch);
  commit(ch);
}

/** Load the page before the oldest message held, keeping the reader's scroll position. */
export async function loadOlder(c) {
  if (c.loadingOlder || !c.hasMore) return;
  const before = oldestSeq(c);
  if (before === null) { c.hasMore = false; return; }
  c.loadingOlder = true;
  renderHistoryStatus(c);
  try {
    const res = await app.api.get(messagesUrl(c.id, `limit=${OLDER_PAGE}&before_seq=${before}`));
    const add = () => update((state, ch) => addOlderPage(state, c, res.messages || [], OLDER_PAGE, ch));
    if (c.key === app.state.activeKey) keepingScrollPlace(() => { add(); flushMessages(app.state); });
    else add();
  } catch (err) {
    toast(`Could not load earlier messages: ${err.message}`, 'error');
  } finally {
    c.loadingOlder = false;
    renderHistoryStatus(c);
  }
  maybeLoadOlder();
}

/** Load older messages when the reader is near the top of a conversation that has more. */
export function maybeLoadOlder() {
  const c = activeConv(app.state);
  if (!c || !c.loaded || !c.hasMore || c.loadingOlder) return;
  if (isNearTop()) loadOlder(c);
}

/** Refresh the sidebar from the server (after every reconnect: things changed meanwhile). */
export async function refreshConversations() {
  try {
    const res = await app.api.get(`api/v1/conversations?limit=${LIST_LIMIT}`);
    update((state, ch) => mergeConversationList(state, res.conversations || [], LIST_LIMIT, ch));
  } catch { /* offline again; the next reconnect retries */ }
}

/** Rename at once; the server's answer (or its conversation_updated) confirms, a failure reverts. */
export async function renameConversation(conv, title) {
  update((state, ch) => upsertConversation(state, { ...conv, title }, ch));
  try {
    const res = await app.api.patch(conversationUrl(conv.id), { title });
    update((state, ch) => upsertConversation(state, res.conversation, ch));
  } catch (err) {
    update((state, ch) => upsertConversation(state, conv, ch));
    toast(`Rename failed: ${err.message}`, 'error');
  }
}

/** Delete a conversation (the user confirmed); other tabs hear of it from the server. */
export async function deleteConversation(key) {
  const conv = app.state.conversations.get(key);
  if (!conv) return;
  try {
    await app.api.del(conversationUrl(conv.id));
    update((state, ch) => removeConversation(state, key, ch, { quiet: true }));
  } catch (err) {
    toast(`Delete failed: ${err.message}`, 'error');
  }
}

/** The user picked an assistant: a new chat will use it; an open conversation switches to it. */
export async function pickAssistant(assistantId) {
  const state = app.state;
  state.pickedAssistant = assistantId;
  const conv = state.activeKey ? state.conversations.get(state.activeKey) : null;
  if (!conv || conv.assistant_id === assistantId) return;
  try {
    const res = await app.api.patch(conversationUrl(conv.id), { assistant_id: assistantId });
    update((s, ch) => upsertConversation(s, res.conversation, ch));
  } catch (err) {
    toast(`Could not change the assistant: ${err.message}`, 'error');
    syncPicker(state);
  }
}
