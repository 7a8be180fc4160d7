// The conversation list (newest first, unread dots, inline rename, delete) and, on narrow
// screens, the drawer that holds it.
import { E } from './elements.js';
import { conversationTitle, sortedConversations } from '../model/conversations.js';
import { idKey } from '../model/ids.js';
import { el, icon, relativeTime } from '../util.js';

let handlers = { onSelect() {}, onRename() {}, onDelete() {} };

const itemOf = (key) => E.conversationList.querySelector(`.conv-item[data-key="${CSS.escape(key)}"]`);

function renderItem(state, conv) {
  const key = idKey(conv.id);
  const active = key === state.activeKey;
  const title = conversationTitle(conv);
  const open = el('button', {
    class: 'conv-open', type: 'button', 'aria-current': active ? 'page' : null,
    onclick: () => handlers.onSelect(conv.id),
  },
  state.unread.has(key) ? el('span', { class: 'unread-dot', title: 'New messages' }, el('span', { class: 'sr-only', text: 'New messages:' })) : null,
  el('span', { class: 'conv-name', text: title }),
  el('span', { class: 'conv-time', text: relativeTime(conv.updated_at || conv.created_at) }));
  const rename = el('button', { class: 'btn-icon conv-act', type: 'button', 'aria-label': `Rename “${title}”`, title: 'Rename', onclick: () => startRename(state, key) }, icon('edit'));
  const del = el('button', { class: 'btn-icon conv-act conv-del', type: 'button', 'aria-label': `Delete “${title}”`, title: 'Delete', onclick: () => confirmDelete(state, key) }, icon('trash'));
  return el('li', { class: `conv-item${active ? ' active' : ''}`, dataset: { key } }, open, el('div', { class: 'conv-actions' }, rename, del));
}

/** Re-render the list, keeping the keyboard focus on the same control of the same item. */
export function renderSidebar(state) {
  const list = E.conversationList;
  const focusedKey = document.activeElement?.closest?.('.conv-item')?.dataset.key;
  const focusedClass = document.activeElement?.className;
  if (list.querySelector('.conv-item.editing')) return; // do not disturb an inline rename; re-rendered when it ends
  const items = sortedConversations(state).map((conv) => renderItem(state, conv));
  list.replaceChildren(...items);
  E.conversationEmpty.hidden = items.length > 0;
  if (focusedKey) {
    const item = itemOf(focusedKey);
    const target = item && (focusedClass?.includes('conv-del') ? item.querySelector('.conv-del')
      : focusedClass?.includes('conv-act') ? item.querySelector('.conv-act') : item.querySelector('.conv-open'));
    if (target) target.focus();
  }
}

/** Refresh the "5 min" times without rebuilding the list. */
export function renderSidebarTimes(state) {
  for (const item of E.conversationList.querySelectorAll('.conv-item')) {
    const conv = state.conversations.get(item.dataset.key);
    const t = item.querySelector('.conv-time');
    if (conv && t) t.textContent = relativeTime(conv.updated_at || conv.created_at);
  }
}

// Replace an item by a title field: Enter or leaving it saves, Esc cancels.
function startRename(state, key) {
  const conv = state.conversations.get(key);
  const item = itemOf(key);
  if (!conv || !item) return;
  item.classList.add('editing');
  const input = el('input', { class: 'conv-rename', 'aria-label': 'New title', maxlength: 200, value: conv.title || '' });
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    item.classList.remove('editing');
    // onRename shows the new title at once, then resolves when the server has answered.
    if (save && title && title !== conv.title) await handlers.onRename(conv, title);
    else renderSidebar(state);
    const again = E.conversationList.querySelector(`.conv-item[data-key="${CSS.escape(key)}"] .conv-open`);
    if (again) again.focus();
  };
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') { ev.preventDefault(); finish(true); }
    if (ev.key === 'Escape') { ev.preventDefault(); finish(false); }
  });
  input.addEventListener('blur', () => finish(true));
  item.replaceChildren(input);
  input.focus();
  input.select();
}

function confirmDelete(state, key) {
  const conv = state.conversations.get(key);
  if (!conv) return;
  if (!window.confirm(`Delete “${conversationTitle(conv)}”? This cannot be undone.`)) return;
  handlers.onDelete(key);
}

/** Open the drawer (narrow screens) and focus the open conversation in it. */
export function openSidebar() {
  E.chatView.classList.add('sidebar-open');
  E.scrim.hidden = false;
  E.menuButton.setAttribute('aria-expanded', 'true');
  (E.conversationList.querySelector('[aria-current="page"]') || E.newChat).focus();
}

/** Close the drawer if it is open. */
export function closeSidebar() {
  if (!isSidebarOpen()) return;
  E.chatView.classList.remove('sidebar-open');
  E.scrim.hidden = true;
  E.menuButton.setAttribute('aria-expanded', 'false');
}

/** Whether the drawer is open. */
export const isSidebarOpen = () => E.chatView.classList.contains('sidebar-open');

/** Forget the rendered list (signing out). */
export const clearSidebar = () => E.conversationList.replaceChildren();

/**
 * Wire the sidebar: onSelect(conversationId), onRename(conversation, title),
 * onDelete(key) after the user confirmed, onNewChat(), onSignOut().
 */
export function bindSidebar({ onSelect, onRename, onDelete, onNewChat, onSignOut }) {
  handlers = { onSelect, onRename, onDelete };
  E.newChat.append(icon('plus'), el('span', { text: 'New chat' }));
  E.logout.append(icon('logout'));
  E.menuButton.append(icon('menu'));
  E.newChat.addEventListener('click', onNewChat);
  E.logout.addEventListener('click', onSignOut);
  E.menuButton.addEventListener('click', () => (isSidebarOpen() ? closeSidebar() : openSidebar()));
  E.scrim.addEventListener('click', closeSidebar);
}
