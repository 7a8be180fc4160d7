// The sidebar's model: conversations as the server describes them, newest first, with unread
// marks and deletions. Switching the open conversation lives here too.
import { idKey } from './ids.js';
import { activeConv, convState } from './state.js';

/** Merge a conversation from the server (REST answer or conversation_updated) into the model. */
export function upsertConversation(state, conv, ch) {
  const key = idKey(conv.id);
  if (conv.deleted) { removeConversation(state, key, ch); return; }
  const prev = state.conversations.get(key);
  if (prev && key !== state.activeKey && conv.updated_at && conv.updated_at !== prev.updated_at && conv.last_message) {
    state.unread.add(key); // something new happened in a conversation that is not open
  }
  state.conversations.set(key, { ...(prev || {}), ...conv });
  ch.sidebar = true;
  if (key === state.activeKey) ch.header = true;
}

/**
 * Drop a conversation and its cache. If it was open the page falls back to a new chat, with a
 * notice unless `quiet` (the user deleted it here, or it vanished while we were offline).
 */
export function removeConversation(state, key, ch, { quiet = false } = {}) {
  if (!state.conversations.has(key)) return;
  state.conversations.delete(key);
  state.convs.delete(key);
  if (state.activeKey === key) {
    state.activeKey = null;
    ch.closed = key;
    ch.reset = true;
    if (!quiet) ch.notice('This conversation was deleted.');
  }
  ch.sidebar = true;
}

/**
 * Merge the server's conversation list. When the list is complete (fewer than `limit`), a
 * conversation missing from it was deleted while we were not listening.
 */
export function mergeConversationList(state, list, limit, ch) {
  const seen = new Set();
  for (const conv of list) { upsertConversation(state, conv, ch); seen.add(idKey(conv.id)); }
  if (list.length < limit) {
    for (const key of [...state.conversations.keys()]) if (!seen.has(key)) removeConversation(state, key, ch, { quiet: true });
  }
  ch.sidebar = true;
}

/** The conversations, most recently active first. */
export function sortedConversations(state) {
  const t = (c) => Date.parse(c.updated_at || c.created_at || 0) || 0;
  return [...state.conversations.values()].sort((a, b) => t(b) - t(a));
}

/** Open a conversation: it becomes active and loses its unread mark; returns its cache. */
export function openConversation(state, cid, ch) {
  const key = idKey(cid);
  state.activeKey = key;
  state.missingKey = null;
  state.unread.delete(key);
  ch.reset = true;
  return convState(state, cid);
}

/** Switch to a new, not yet created chat. */
export function openNewChat(state, ch) {
  state.activeKey = null;
  state.missingKey = null;
  ch.reset = true;
}

/**
 * The URL named a conversation the server does not show us (deleted, never ours, a typo): the
 * page says so instead of a blank pane; sending starts a new chat.
 */
export function openMissing(state, cid, ch) {
  const key = idKey(cid);
  if (!state.conversations.has(key)) state.convs.delete(key); // no empty cache for it
  state.activeKey = null;
  state.missingKey = key;
  ch.reset = true;
}

/** Mark the open conversation as left (its subscription ends); returns the cache that was open. */
export function leaveActive(state) {
  const c = activeConv(state);
  if (!c) return null;
  const wasJoined = c.joined;
  c.joined = false;
  c.joining = false;
  return wasJoined ? c : null;
}

/** The title shown for a conversation. */
export const conversationTitle = (conv) => (conv && conv.title) || 'New chat';
