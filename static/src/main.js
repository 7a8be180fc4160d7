// chatd web page: accounts, conversations, streaming replies, resume after reconnect.
import { Api } from './api.js';
import { ChatSocket, socketUrl } from './socket.js';
import { renderInto } from './markdown.js';
import { $, el, icon, randomId, idKey, relativeTime, clockTime, formatUsage, copyText } from './util.js';

const SESSION_KEY = 'chatd.session';
const ACTIVE_KEY = 'chatd.active';
const DRAFTS_KEY = 'chatd.drafts';
const PAGE_SIZE = 50;
const OLDER_PAGE = 30;
const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 4000;
const TYPING_EXPIRE_MS = 6000;
const SUGGESTIONS = [
  'Explain how WebSockets differ from long polling',
  'Write a Python function that merges two sorted lists',
  'Give me a markdown table of three sorting algorithms',
];

// ---------------------------------------------------------------- state

const state = {
  session: null, // {token, user:{id, username}, expiresAt}
  socket: null,
  api: null,
  assistants: [],
  defaultAssistant: null,
  conversations: new Map(), // key -> conversation
  convs: new Map(), // key -> per-conversation cache (messages, streams, seq)
  activeKey: null, // null: a new, not yet created chat
  pending: new Map(), // client_msg_id -> {conversation_id, content, assistant_id, key}
  dom: new Map(), // message key -> <li> (active conversation only)
  dirty: new Set(),
  renderScheduled: false,
  typing: { key: null, on: false, sentAt: 0, idleTimer: null },
  authMode: 'login',
  channel: null,
  unread: new Set(),
};

window.__chatd = state; // for debugging and the browser tests (read-only use)

const api = new Api({
  getToken: () => state.session?.token,
  onUnauthorized: () => signOut('Your session has expired. Please sign in again.'),
});
state.api = api;

function convState(cid) {
  const key = idKey(cid);
  let c = state.convs.get(key);
  if (!c) {
    c = {
      key, id: cid, messages: new Map(), streams: new Map(), lastSeq: 0, loaded: false, loading: null,
      hasMore: false, loadingOlder: false, joined: false, joining: false, assistantTyping: false,
      typers: new Map(), insertSeq: 0,
    };
    state.convs.set(key, c);
  }
  return c;
}

const activeConv = () => (state.activeKey ? state.convs.get(state.activeKey) : null);
const meId = () => state.session?.user?.id;
const isMe = (senderId) => senderId !== null && senderId !== undefined && idKey(senderId) === idKey(meId());

// ---------------------------------------------------------------- elements

const E = {};
function bindElements() {
  for (const id of ['boot', 'auth-view', 'auth-form', 'auth-username', 'auth-password', 'auth-error', 'auth-submit',
    'auth-hint', 'auth-notice', 'tab-login', 'tab-register', 'auth-fields', 'chat-view', 'sidebar', 'scrim',
    'new-chat', 'conversation-list', 'conversation-empty', 'me-name', 'me-avatar', 'logout', 'menu-button',
    'conversation-title', 'assistant-picker', 'connection-status', 'messages', 'history-status', 'message-list',
    'empty-state', 'suggestions', 'jump-bottom', 'typing-others', 'composer', 'composer-input', 'send-button',
    'stop-button', 'composer-hint', 'toasts']) {
    E[id.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = document.getElementById(id);
  }
}

// ---------------------------------------------------------------- toasts

function toast(text, kind = 'info', ms = 5000) {
  const t = el('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    kind === 'error' ? icon('alert') : null, el('span', { text }));
  E.toasts.appendChild(t);
  setTimeout(() => { t.classList.add('toast-out'); setTimeout(() => t.remove(), 300); }, ms);
}

// ---------------------------------------------------------------- session (memory + sessionStorage; shared between tabs via BroadcastChannel)

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && s.token && (!s.expiresAt || s.expiresAt > Date.now() + 5000)) return s;
  } catch { /* ignore */ }
  return null;
}

function saveSession(s) {
  if (s) sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(SESSION_KEY);
}

function openChannel() {
  if (!('BroadcastChannel' in window)) return;
  state.channel = new BroadcastChannel('chatd-session');
  state.channel.addEventListener('message', (ev) => {
    const m = ev.data || {};
    if (m.type === 'need-session' && state.session) {
      state.channel.postMessage({ type: 'session', session: state.session });
    } else if (m.type === 'signed-in' && !state.session && m.session) {
      startChat(m.session, { announce: false });
    } else if (m.type === 'signed-out' && state.session && m.token === state.session.token) {
      signOut('You signed out in another tab.', { broadcast: false });
    }
  });
}

/** A new tab of a signed-in user asks the others for the session (same origin only). */
function askOtherTabs(timeoutMs = 200) {
  if (!state.channel) return Promise.resolve(null);
  return new Promise((resolve) => {
    const onMsg = (ev) => {
      if (ev.data && ev.data.type === 'session' && ev.data.session?.token) {
        state.channel.removeEventListener('message', onMsg);
        resolve(ev.data.session);
      }
    };
    state.channel.addEventListener('message', onMsg);
    state.channel.postMessage({ type: 'need-session' });
    setTimeout(() => { state.channel.removeEventListener('message', onMsg); resolve(null); }, timeoutMs);
  });
}

// ---------------------------------------------------------------- auth view

function setAuthMode(mode) {
  state.authMode = mode;
  const reg = mode === 'register';
  E.tabLogin.setAttribute('aria-selected', String(!reg));
  E.tabRegister.setAttribute('aria-selected', String(reg));
  E.tabLogin.tabIndex = reg ? -1 : 0;
  E.tabRegister.tabIndex = reg ? 0 : -1;
  E.authFields.setAttribute('aria-labelledby', reg ? 'tab-register' : 'tab-login');
  E.authSubmit.textContent = reg ? 'Create account' : 'Sign in';
  E.authPassword.autocomplete = reg ? 'new-password' : 'current-password';
  E.authHint.hidden = !reg;
  E.authError.textContent = '';
}

function showAuth(notice = '') {
  E.boot.hidden = true;
  E.chatView.hidden = true;
  E.authView.hidden = false;
  setAuthMode('login');
  E.authNotice.textContent = notice;
  document.title = 'Sign in · chatd';
  setTimeout(() => (E.authUsername.value ? E.authPassword : E.authUsername).focus(), 0);
}

async function onAuthSubmit(ev) {
  ev.preventDefault();
  const username = E.authUsername.value.trim();
  const password = E.authPassword.value;
  E.authError.textContent = '';
  if (!username) { E.authError.textContent = 'Enter a username.'; E.authUsername.focus(); return; }
  if (!password) { E.authError.textContent = 'Enter a password.'; E.authPassword.focus(); return; }
  if (state.authMode === 'register' && password.length < 8) {
    E.authError.textContent = 'Choose a password of at least 8 characters.';
    E.authPassword.focus();
    return;
  }
  E.authSubmit.disabled = true;
  E.authSubmit.classList.add('busy');
  try {
    const res = state.authMode === 'register' ? await api.register(username, password) : await api.login(username, password);
    E.authPassword.value = '';
    const session = {
      token: res.access_token,
      user: res.user,
      expiresAt: res.expires_in ? Date.now() + res.expires_in * 1000 : null,
    };
    startChat(session, { announce: true });
  } catch (err) {
    let msg = err.message;
    if (err.status === 401) msg = 'Wrong username or password.';
    else if (err.status === 409) msg = 'That username is taken. Choose another or sign in.';
    else if (err.status === 429) msg = `Too many attempts. Try again in ${err.retryAfter || 'a few'} seconds.`;
    E.authError.textContent = msg;
  } finally {
    E.authSubmit.disabled = false;
    E.authSubmit.classList.remove('busy');
  }
}

function signOut(notice = '', { broadcast = true } = {}) {
  const old = state.session;
  if (!old) { showAuth(notice); return; }
  if (broadcast && state.channel) state.channel.postMessage({ type: 'signed-out', token: old.token });
  state.session = null;
  saveSession(null);
  if (state.socket) { state.socket.stop(); state.socket = null; }
  state.conversations.clear();
  state.convs.clear();
  state.pending.clear();
  state.dom.clear();
  state.activeKey = null;
  E.messageList.replaceChildren();
  E.conversationList.replaceChildren();
  showAuth(notice);
}

// ---------------------------------------------------------------- chat start

async function startChat(session, { announce = false } = {}) {
  state.session = session;
  saveSession(session);
  if (announce && state.channel) state.channel.postMessage({ type: 'signed-in', session });
  E.boot.hidden = true;
  E.authView.hidden = true;
  E.chatView.hidden = false;
  E.meName.textContent = session.user?.username || `User ${session.user?.id}`;
  E.meAvatar.textContent = (session.user?.username || '?').slice(0, 1).toUpperCase();
  document.title = 'chatd';

  const socket = new ChatSocket({ url: socketUrl(), getToken: () => state.session?.token });
  state.socket = socket;
  socket.addEventListener('state', (ev) => onSocketState(ev.detail));
  socket.addEventListener('online', () => onOnline());
  socket.addEventListener('frame', (ev) => onFrame(ev.detail));
  socket.addEventListener('authfailed', (ev) => {
    signOut(ev.detail.reason === 'Token expired' ? 'Your session has expired. Please sign in again.'
      : 'Please sign in again.', { broadcast: false });
  });
  socket.start();

  renderActive();
  try {
    const [assistants, convs] = await Promise.all([
      api.get('api/v1/assistants'),
      api.get('api/v1/conversations?limit=100'),
    ]);
    if (state.socket !== socket) return;
    setAssistants(assistants.assistants || []);
    for (const conv of convs.conversations || []) upsertConversation(conv, { render: false });
    renderSidebar();
  } catch (err) {
    if (err.status !== 401) toast(`Could not load your conversations: ${err.message}`, 'error');
    return;
  }
  const wanted = sessionStorage.getItem(ACTIVE_KEY);
  if (wanted && state.conversations.has(wanted)) selectConversation(state.conversations.get(wanted).id, { focus: false });
  else renderActive();
  E.composerInput.focus();
}

function setAssistants(list) {
  state.assistants = list;
  state.defaultAssistant = (list.find((a) => a.default) || list[0] || {}).id ?? null;
  E.assistantPicker.replaceChildren(...list.map((a) => el('option', { value: a.id, text: a.name || a.id })));
  E.assistantPicker.hidden = list.length === 0;
  syncPicker();
}

function assistantName(id) {
  const a = state.assistants.find((x) => x.id === id);
  return a ? a.name || a.id : id || 'Assistant';
}

function syncPicker() {
  const conv = state.activeKey ? state.conversations.get(state.activeKey) : null;
  const want = conv?.assistant_id || state.pickedAssistant || state.defaultAssistant;
  if (want && [...E.assistantPicker.options].some((o) => o.value === want)) E.assistantPicker.value = want;
}

// ---------------------------------------------------------------- connection status

function onSocketState({ state: s, retryInMs }) {
  const status = E.connectionStatus;
  status.dataset.state = s;
  clearInterval(state.countdown);
  const text = status.querySelector('.status-text');
  if (s === 'online') text.textContent = 'Online';
  else if (s === 'connecting') text.textContent = 'Connecting…';
  else if (s === 'waiting') {
    const until = Date.now() + retryInMs;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      text.textContent = left > 1 ? `Offline · retry in ${left}s` : 'Reconnecting…';
    };
    tick();
    state.countdown = setInterval(tick, 500);
  } else text.textContent = 'Offline';
  status.title = s === 'waiting' ? 'Connection lost. Click to retry now.' : '';
  if (s !== 'online') {
    for (const c of state.convs.values()) { c.joined = false; c.joining = false; }
  }
  updateComposer();
}

async function onOnline() {
  // After every (re)connect: rejoin the open conversation from where we were, refresh the sidebar.
  const c = activeConv();
  if (c) joinConversation(c);
  for (const [id, p] of state.pending) if (!c || p.convKey !== c.key) sendPending(id);
  try {
    const convs = await api.get('api/v1/conversations?limit=100');
    const seen = new Set();
    for (const conv of convs.conversations || []) { upsertConversation(conv, { render: false }); seen.add(idKey(conv.id)); }
    if ((convs.conversations || []).length < 100) {
      for (const key of [...state.conversations.keys()]) if (!seen.has(key)) removeConversation(key, { quiet: true });
    }
    renderSidebar();
  } catch { /* offline again; the next reconnect retries */ }
}

// ---------------------------------------------------------------- conversations (sidebar)

function upsertConversation(conv, { render = true } = {}) {
  const key = idKey(conv.id);
  if (conv.deleted) { removeConversation(key); return; }
  const prev = state.conversations.get(key);
  if (prev && key !== state.activeKey && conv.updated_at && conv.updated_at !== prev.updated_at && conv.last_message) {
    state.unread.add(key); // something new happened in a conversation that is not open
  }
  state.conversations.set(key, { ...(prev || {}), ...conv });
  if (render) renderSidebar();
  if (key === state.activeKey) renderHeader();
}

function removeConversation(key, { quiet = false } = {}) {
  if (!state.conversations.has(key)) return;
  state.conversations.delete(key);
  state.convs.delete(key);
  if (state.activeKey === key) {
    state.activeKey = null;
    sessionStorage.removeItem(ACTIVE_KEY);
    if (!quiet) toast('This conversation was deleted.');
    renderActive();
  }
  renderSidebar();
}

function sortedConversations() {
  const t = (c) => Date.parse(c.updated_at || c.created_at || 0) || 0;
  return [...state.conversations.values()].sort((a, b) => t(b) - t(a));
}

function renderSidebar() {
  const list = E.conversationList;
  const focusedKey = document.activeElement?.closest?.('.conv-item')?.dataset.key;
  const focusedClass = document.activeElement?.className;
  const editing = list.querySelector('.conv-item.editing');
  if (editing) return; // do not disturb an inline rename; re-rendered when it ends
  const items = sortedConversations().map((conv) => {
    const key = idKey(conv.id);
    const active = key === state.activeKey;
    const open = el('button', {
      class: 'conv-open', type: 'button', 'aria-current': active ? 'page' : null,
      onclick: () => selectConversation(conv.id),
    },
    state.unread.has(key) ? el('span', { class: 'unread-dot', title: 'New messages' }, el('span', { class: 'sr-only', text: 'New messages:' })) : null,
    el('span', { class: 'conv-name', text: conv.title || 'New chat' }),
    el('span', { class: 'conv-time', text: relativeTime(conv.updated_at || conv.created_at) }));
    const rename = el('button', { class: 'btn-icon conv-act', type: 'button', 'aria-label': `Rename “${conv.title || 'New chat'}”`, title: 'Rename', onclick: () => startRename(key) }, icon('edit'));
    const del = el('button', { class: 'btn-icon conv-act conv-del', type: 'button', 'aria-label': `Delete “${conv.title || 'New chat'}”`, title: 'Delete', onclick: () => deleteConversation(key) }, icon('trash'));
    return el('li', { class: `conv-item${active ? ' active' : ''}`, dataset: { key } }, open, el('div', { class: 'conv-actions' }, rename, del));
  });
  list.replaceChildren(...items);
  E.conversationEmpty.hidden = items.length > 0;
  if (focusedKey) {
    const item = list.querySelector(`.conv-item[data-key="${CSS.escape(focusedKey)}"]`);
    const target = item && (focusedClass?.includes('conv-del') ? item.querySelector('.conv-del')
      : focusedClass?.includes('conv-act') ? item.querySelector('.conv-act') : item.querySelector('.conv-open'));
    if (target) target.focus();
  }
}

function startRename(key) {
  const conv = state.conversations.get(key);
  const item = E.conversationList.querySelector(`.conv-item[data-key="${CSS.escape(key)}"]`);
  if (!conv || !item) return;
  item.classList.add('editing');
  const input = el('input', { class: 'conv-rename', 'aria-label': 'New title', maxlength: 200, value: conv.title || '' });
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    item.classList.remove('editing');
    if (save && title && title !== conv.title) {
      upsertConversation({ ...conv, title }); // immediate; the server's conversation_updated confirms
      try {
        const res = await api.patch(`api/v1/conversations/${encodeURIComponent(conv.id)}`, { title });
        upsertConversation(res.conversation);
      } catch (err) {
        upsertConversation(conv);
        toast(`Rename failed: ${err.message}`, 'error');
      }
    } else renderSidebar();
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

async function deleteConversation(key) {
  const conv = state.conversations.get(key);
  if (!conv) return;
  if (!window.confirm(`Delete “${conv.title || 'New chat'}”? This cannot be undone.`)) return;
  try {
    await api.del(`api/v1/conversations/${encodeURIComponent(conv.id)}`);
    removeConversation(key, { quiet: true });
  } catch (err) {
    toast(`Delete failed: ${err.message}`, 'error');
  }
}

function newChat() {
  leaveActive();
  state.activeKey = null;
  sessionStorage.removeItem(ACTIVE_KEY);
  renderActive();
  closeSidebar();
  E.composerInput.focus();
}

// ---------------------------------------------------------------- selecting, loading and joining a conversation

function leaveActive() {
  const c = activeConv();
  if (!c) return;
  stopTyping();
  if (c.joined && state.socket?.online) state.socket.send('leave_conversation', { conversation_id: c.id });
  c.joined = false;
  c.joining = false;
}

async function selectConversation(cid, { focus = true } = {}) {
  const key = idKey(cid);
  if (key === state.activeKey) { closeSidebar(); return; }
  saveDraft();
  leaveActive();
  state.activeKey = key;
  state.unread.delete(key);
  sessionStorage.setItem(ACTIVE_KEY, key);
  const c = convState(cid);
  renderActive();
  closeSidebar();
  if (focus) E.composerInput.focus();
  await ensureLoaded(c);
  if (state.activeKey !== key) return;
  if (state.socket?.online) joinConversation(c);
}

async function ensureLoaded(c) {
  if (c.loaded) return;
  if (!c.loading) {
    c.loading = (async () => {
      E.historyStatus.textContent = 'Loading messages…';
      try {
        const res = await api.get(`api/v1/conversations/${encodeURIComponent(c.id)}/messages?limit=${PAGE_SIZE}`);
        const msgs = res.messages || [];
        c.hasMore = msgs.filter((m) => m.seq !== null && m.seq !== undefined).length >= PAGE_SIZE;
        for (const m of msgs) upsertMessage(c, m, { fromHistory: true });
        c.loaded = true;
      } catch (err) {
        if (err.status === 404 || err.status === 403) removeConversation(c.key);
        else toast(`Could not load messages: ${err.message}`, 'error');
      } finally {
        c.loading = null;
      }
    })();
  }
  await c.loading;
  if (c.key === state.activeKey) {
    syncDom(c);
    scrollToBottom(true);
    renderHistoryStatus(c);
    maybeLoadOlder();
  }
}

async function joinConversation(c) {
  if (!state.socket?.online || c.joining) return;
  if (!c.loaded) { await ensureLoaded(c); if (!c.loaded || state.activeKey !== c.key) return; }
  c.joining = true;
  try {
    // Everything stored after what we have is replayed before `joined`; live replies come with it.
    await state.socket.request('join_conversation', { conversation_id: c.id, since_seq: c.lastSeq });
  } catch (err) {
    c.joining = false;
    if (err.code === 'NOT_FOUND' || err.code === 'FORBIDDEN') removeConversation(c.key);
    else if (!err.disconnected) toast(`Could not open the conversation: ${err.message}`, 'error');
  }
}

function onJoined(c, data) {
  c.joining = false;
  c.joined = state.activeKey === c.key;
  if (typeof data.seq === 'number') c.lastSeq = Math.max(c.lastSeq, data.seq);
  const live = new Set();
  for (const snap of data.active_streams || []) {
    const mkey = idKey(snap.message_id);
    live.add(mkey);
    const msg = ensureReplyPlaceholder(c, snap.message_id, {});
    const s = streamOf(c, snap.message_id);
    // The snapshot is the text up to chunk `index`; live chunks continue from index + 1.
    if (snap.index > s.index || (snap.index === s.index && (snap.content || '').length > s.text.length)) {
      s.text = snap.content || '';
      s.index = snap.index;
    }
    msg.content = s.text;
    markDirty(c, mkey);
  }
  // A reply we saw streaming that is neither live nor finished by the replay ended while we were
  // away without us hearing of it: fetch the stored truth.
  const stale = [...c.messages.values()].filter((m) => m.status === 'streaming' && !live.has(idKey(m.id)));
  if (stale.length) refreshTail(c, stale);
  resendPending(c);
  syncDom(c);
  updateComposer();
}

async function refreshTail(c, stale) {
  try {
    const res = await api.get(`api/v1/conversations/${encodeURIComponent(c.id)}/messages?limit=${PAGE_SIZE}`);
    for (const m of res.messages || []) upsertMessage(c, m);
  } catch { /* keep what we have */ }
  for (const m of stale) {
    const cur = c.messages.get(idKey(m.id));
    if (cur && cur.status === 'streaming' && !c.streams.has(idKey(m.id))) {
      cur.status = 'interrupted';
      markDirty(c, idKey(m.id));
    }
  }
  if (c.key === state.activeKey) syncDom(c);
  updateComposer();
}

async function loadOlder(c) {
  if (c.loadingOlder || !c.hasMore) return;
  const seqs = [...c.messages.values()].map((m) => m.seq).filter((s) => typeof s === 'number');
  if (!seqs.length) { c.hasMore = false; return; }
  c.loadingOlder = true;
  renderHistoryStatus(c);
  const before = Math.min(...seqs);
  try {
    const res = await api.get(`api/v1/conversations/${encodeURIComponent(c.id)}/messages?limit=${OLDER_PAGE}&before_seq=${before}`);
    const msgs = res.messages || [];
    c.hasMore = msgs.length >= OLDER_PAGE;
    if (c.key === state.activeKey) {
      const box = E.messages;
      const fromBottom = box.scrollHeight - box.scrollTop;
      for (const m of msgs) upsertMessage(c, m, { fromHistory: true });
      syncDom(c);
      flushRender();
      box.scrollTop = box.scrollHeight - fromBottom; // keep the reader's place
    } else {
      for (const m of msgs) upsertMessage(c, m, { fromHistory: true });
    }
  } catch (err) {
    toast(`Could not load earlier messages: ${err.message}`, 'error');
  } finally {
    c.loadingOlder = false;
    renderHistoryStatus(c);
  }
  maybeLoadOlder();
}

function maybeLoadOlder() {
  const c = activeConv();
  if (!c || !c.loaded || !c.hasMore || c.loadingOlder) return;
  const box = E.messages;
  if (box.scrollTop < 200 || box.scrollHeight <= box.clientHeight + 10) loadOlder(c);
}

function renderHistoryStatus(c) {
  let text = '';
  if (c.loadingOlder) text = 'Loading earlier messages…';
  else if (c.loaded && !c.hasMore && c.messages.size > 0) text = 'Beginning of the conversation';
  E.historyStatus.textContent = text;
}

// ---------------------------------------------------------------- messages (model)

function sortKey(c, m) {
  if (typeof m.seq === 'number') return [m.seq, 0, 0];
  if (m.reply_to !== undefined && m.reply_to !== null) {
    const parent = c.messages.get(idKey(m.reply_to));
    if (parent && typeof parent.seq === 'number') return [parent.seq, 1, m._ins || 0];
  }
  return [Number.MAX_SAFE_INTEGER, 0, m._ins || 0];
}

function sortedMessages(c) {
  const arr = [...c.messages.values()];
  const keys = new Map(arr.map((m) => [m, sortKey(c, m)]));
  return arr.sort((a, b) => {
    const ka = keys.get(a);
    const kb = keys.get(b);
    return ka[0] - kb[0] || ka[1] - kb[1] || ka[2] - kb[2];
  });
}

function upsertMessage(c, message, { fromHistory = false } = {}) {
  const key = idKey(message.id);
  // Our own optimistic copy becomes the stored message (same element, no flicker).
  if (message.client_msg_id && state.pending.has(message.client_msg_id)) {
    const p = state.pending.get(message.client_msg_id);
    state.pending.delete(message.client_msg_id);
    const tmp = c.messages.get(p.key);
    if (tmp) {
      c.messages.delete(p.key);
      const li = state.dom.get(p.key);
      if (li) { state.dom.delete(p.key); state.dom.set(key, li); li.dataset.id = key; }
    }
  } else if (message.client_msg_id) {
    // Sent by another tab (or before a reload): drop a local optimistic copy with the same id.
    for (const [k, m] of c.messages) {
      if (m._optimistic && m.client_msg_id === message.client_msg_id) {
        c.messages.delete(k);
        const li = state.dom.get(k);
        if (li) { state.dom.delete(k); state.dom.set(key, li); li.dataset.id = key; }
      }
    }
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
  if (typeof merged.seq === 'number' && !fromHistory) c.lastSeq = Math.max(c.lastSeq, merged.seq);
  if (typeof merged.seq === 'number' && fromHistory) c.lastSeq = Math.max(c.lastSeq, merged.seq);
  markDirty(c, key);
  return merged;
}

function streamOf(c, messageId) {
  const key = idKey(messageId);
  let s = c.streams.get(key);
  if (!s) { s = { text: '', index: -1 }; c.streams.set(key, s); }
  return s;
}

function ensureReplyPlaceholder(c, messageId, { assistant_id, reply_to } = {}) {
  const key = idKey(messageId);
  let m = c.messages.get(key);
  if (!m) {
    const conv = state.conversations.get(c.key);
    m = {
      id: messageId, conversation_id: c.id, content: '', message_type: 'assistant', sender_id: null,
      status: 'streaming', assistant_id: assistant_id || conv?.assistant_id || state.defaultAssistant,
      reply_to, seq: null, _ins: ++c.insertSeq,
    };
    c.messages.set(key, m);
    if (c.key === state.activeKey) syncDom(c);
  } else {
    if (assistant_id) m.assistant_id = assistant_id;
    if (reply_to !== undefined) m.reply_to = reply_to;
  }
  return m;
}

// ---------------------------------------------------------------- frames

function onFrame(f) {
  const d = f.data || {};
  const cid = d.conversation_id ?? d.message?.conversation_id ?? d.conversation?.id;
  switch (f.type) {
    case 'conversation_updated':
      upsertConversation(d.conversation);
      return;
    case 'ack':
    case 'pong':
      return;
    case 'error':
      if (d.ref === undefined) toast(errorText(d), 'error');
      return;
    default:
      break;
  }
  // Stream frames without a conversation id: find the conversation by message id.
  let c = cid !== undefined && cid !== null ? convState(cid) : findConvOfMessage(d.message_id);
  if (!c) return;
  switch (f.type) {
    case 'joined':
      onJoined(c, d);
      break;
    case 'message_received':
    case 'message_added': {
      const msg = d.message;
      const prev = c.messages.get(idKey(msg.id));
      if (prev && typeof prev.seq === 'number' && prev.seq === msg.seq && prev.status === msg.status && f.type === 'message_received') break;
      upsertMessage(c, msg);
      if (msg.message_type === 'assistant' && msg.status !== 'streaming') c.assistantTyping = false;
      if (c.key === state.activeKey) { syncDom(c); if (isMe(msg.sender_id)) scrollToBottom(true); }
      break;
    }
    case 'stream_start': {
      ensureReplyPlaceholder(c, d.message_id, { assistant_id: d.assistant_id, reply_to: d.reply_to });
      streamOf(c, d.message_id);
      markDirty(c, idKey(d.message_id));
      if (c.key === state.activeKey) syncDom(c);
      break;
    }
    case 'stream_content': {
      const key = idKey(d.message_id);
      const m = ensureReplyPlaceholder(c, d.message_id, {});
      if (m.status !== 'streaming') break; // already finished (e.g. stored copy arrived first)
      const s = streamOf(c, d.message_id);
      const index = typeof d.index === 'number' ? d.index : s.index + 1;
      if (index <= s.index) break; // already have it (snapshot or duplicate): never show text twice
      s.text += d.content || '';
      s.index = index;
      m.content = s.text;
      markDirty(c, key);
      break;
    }
    case 'stream_complete': {
      const key = idKey(d.message_id);
      const m = c.messages.get(key);
      if (m) {
        m.usage = d.usage || m.usage;
        m.finish_reason = d.finish_reason;
        if (m.status === 'streaming') m.status = d.finish_reason === 'cancelled' ? 'cancelled' : 'complete';
        markDirty(c, key);
      }
      c.assistantTyping = false;
      updateComposer();
      break;
    }
    case 'stream_error': {
      const key = idKey(d.message_id);
      const m = c.messages.get(key);
      if (m) {
        m.status = d.code === 'CANCELLED' ? 'cancelled' : 'error';
        m.error = d.message;
        markDirty(c, key);
      }
      c.assistantTyping = false;
      if (d.code !== 'CANCELLED' && c.key === state.activeKey) toast(`The assistant failed: ${d.message || d.code}`, 'error');
      updateComposer();
      break;
    }
    case 'typing_indicator':
      onTyping(c, d);
      break;
    default:
      break;
  }
}

function findConvOfMessage(messageId) {
  const key = idKey(messageId);
  for (const c of state.convs.values()) if (c.messages.has(key) || c.streams.has(key)) return c;
  return activeConv();
}

function errorText(d) {
  if (d.code === 'RATE_LIMITED') return `Slow down: try again in ${d.retry_after ?? 'a few'} s.`;
  return d.message || d.code || 'Something went wrong';
}

function onTyping(c, d) {
  if (d.user_id === 'assistant') {
    c.assistantTyping = !!d.is_typing;
    if (c.key === state.activeKey) syncDom(c);
    return;
  }
  if (isMe(d.user_id)) return;
  const k = idKey(d.user_id);
  clearTimeout(c.typers.get(k));
  if (d.is_typing) {
    c.typers.set(k, setTimeout(() => { c.typers.delete(k); renderTypers(); }, TYPING_EXPIRE_MS));
  } else c.typers.delete(k);
  renderTypers();
}

function renderTypers() {
  const c = activeConv();
  const n = c ? c.typers.size : 0;
  E.typingOthers.textContent = n === 0 ? '' : n === 1 ? `User ${[...c.typers.keys()][0]} is typing…` : `${n} people are typing…`;
  E.typingOthers.classList.toggle('on', n > 0);
}

// ---------------------------------------------------------------- messages (view)

function markDirty(c, key) {
  if (c.key !== state.activeKey) return;
  state.dirty.add(key);
  if (state.renderScheduled) return;
  state.renderScheduled = true;
  if (document.visibilityState === 'hidden') setTimeout(flushRender, 100);
  else requestAnimationFrame(flushRender);
}

function isNearBottom() {
  const box = E.messages;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
}

function flushRender() {
  state.renderScheduled = false;
  const c = activeConv();
  const keys = [...state.dirty];
  state.dirty.clear();
  if (!c) return;
  const stick = isNearBottom();
  for (const key of keys) {
    const m = c.messages.get(key);
    if (m) renderMessage(c, m);
  }
  if (stick) scrollToBottom(false);
  else if (keys.length) E.jumpBottom.hidden = false;
  updateComposer();
}

function syncDom(c) {
  if (c.key !== state.activeKey) return;
  const list = E.messageList;
  const want = [];
  for (const m of sortedMessages(c)) {
    const key = idKey(m.id);
    let li = state.dom.get(key);
    if (!li) { li = renderMessage(c, m); }
    want.push(li);
  }
  // Assistant typing before its reply exists.
  const waiting = c.assistantTyping && ![...c.messages.values()].some((m) => m.message_type === 'assistant' && m.status === 'streaming');
  if (waiting) want.push(typingRow(c));
  const stick = isNearBottom();
  for (let i = 0; i < want.length; i += 1) {
    if (list.children[i] !== want[i]) list.insertBefore(want[i], list.children[i] || null);
  }
  while (list.children.length > want.length) list.lastElementChild.remove();
  for (const [key, li] of state.dom) if (!li.isConnected) state.dom.delete(key);
  E.emptyState.hidden = want.length > 0 || (c && !c.loaded);
  if (stick) scrollToBottom(false);
  updateComposer();
}

let typingRowEl = null;
function typingRow(c) {
  if (!typingRowEl) {
    typingRowEl = el('li', { class: 'msg msg-assistant msg-typing' },
      el('div', { class: 'msg-avatar', 'aria-hidden': 'true' }, icon('spark')),
      el('div', { class: 'msg-main' },
        el('div', { class: 'msg-author', text: assistantName(state.conversations.get(c.key)?.assistant_id) }),
        el('div', { class: 'typing-dots', role: 'status', 'aria-label': 'The assistant is typing' }, el('span'), el('span'), el('span'))));
  }
  return typingRowEl;
}

function renderMessage(c, m) {
  const key = idKey(m.id);
  let li = state.dom.get(key);
  const kind = m.message_type === 'assistant' ? 'assistant' : m.message_type === 'system' ? 'system' : isMe(m.sender_id) ? 'me' : 'other';
  if (!li || li.dataset.kind !== kind) {
    const fresh = buildMessage(kind, key);
    if (li) li.replaceWith(fresh);
    li = fresh;
    state.dom.set(key, li);
  }
  li.dataset.status = m._failed ? 'failed' : m._optimistic ? 'sending' : m.status || 'complete';
  const body = li.querySelector('.msg-body');
  const foot = li.querySelector('.msg-foot');
  if (kind === 'assistant') {
    li.querySelector('.msg-author').textContent = assistantName(m.assistant_id);
    const streaming = m.status === 'streaming';
    const text = m.content || '';
    if (streaming && !text) {
      if (!body.querySelector('.typing-dots')) {
        body.replaceChildren(el('div', { class: 'typing-dots', role: 'status', 'aria-label': 'The assistant is typing' }, el('span'), el('span'), el('span')));
      }
    } else {
      const dots = body.querySelector('.typing-dots');
      if (dots) dots.remove();
      if (body.__text !== text) {
        renderInto(body, text, { enhance: enhanceBlock });
        body.__text = text;
      }
    }
    body.setAttribute('aria-busy', streaming ? 'true' : 'false');
    li.classList.toggle('streaming', streaming);
    renderAssistantFoot(foot, m);
  } else {
    if (kind === 'other') li.querySelector('.msg-author').textContent = `User ${m.sender_id}`;
    if (body.textContent !== (m.content || '')) body.textContent = m.content || '';
    renderUserFoot(foot, m, kind);
  }
  return li;
}

function buildMessage(kind, key) {
  const li = el('li', { class: `msg msg-${kind}`, dataset: { id: key, kind } });
  if (kind === 'assistant') {
    li.append(
      el('div', { class: 'msg-avatar', 'aria-hidden': 'true' }, icon('spark')),
      el('div', { class: 'msg-main' },
        el('div', { class: 'msg-author' }),
        el('div', { class: 'msg-body markdown', 'aria-live': 'polite', 'aria-atomic': 'false', 'aria-relevant': 'additions text' }),
        el('div', { class: 'msg-foot' })),
    );
  } else if (kind === 'other') {
    li.append(el('div', { class: 'msg-main' }, el('div', { class: 'msg-author' }),
      el('div', { class: 'msg-body bubble' }), el('div', { class: 'msg-foot' })));
  } else {
    li.append(el('div', { class: 'msg-main' }, el('div', { class: 'msg-body bubble' }), el('div', { class: 'msg-foot' })));
  }
  return li;
}

function renderAssistantFoot(foot, m) {
  const parts = [];
  if (m.status === 'cancelled') parts.push(el('span', { class: 'badge badge-warn', text: 'Stopped' }));
  else if (m.status === 'error') parts.push(el('span', { class: 'badge badge-error', text: m.error ? `Error: ${m.error}` : 'Error' }));
  else if (m.status === 'interrupted') parts.push(el('span', { class: 'badge badge-warn', text: 'Interrupted' }));
  if (m.finish_reason === 'length') parts.push(el('span', { class: 'badge', text: 'Cut off at the length limit' }));
  if (m.status !== 'streaming') {
    if (m.usage) parts.push(el('span', { class: 'usage', text: formatUsage(m.usage) }));
    if (m.content) {
      parts.push(el('button', {
        class: 'btn-link copy-msg', type: 'button', text: 'Copy',
        onclick: async (ev) => { const ok = await copyText(m.content); flash(ev.currentTarget, ok ? 'Copied' : 'Copy failed'); },
      }));
    }
  }
  const sig = JSON.stringify([m.status, m.usage, m.error, m.finish_reason, !!m.content]);
  if (foot.__sig === sig) return;
  foot.__sig = sig;
  foot.replaceChildren(...parts);
}

function renderUserFoot(foot, m, kind) {
  const sig = JSON.stringify([m._optimistic, m._failed, m.created_at]);
  if (foot.__sig === sig) return;
  foot.__sig = sig;
  const parts = [];
  if (m._failed) {
    parts.push(el('span', { class: 'badge badge-error', text: `Not sent: ${m._failed}` }));
    parts.push(el('button', { class: 'btn-link', type: 'button', text: 'Retry', onclick: () => retryMessage(m) }));
  } else if (m._optimistic) parts.push(el('span', { class: 'muted', text: 'Sending…' }));
  else if (m.created_at) parts.push(el('time', { datetime: m.created_at, class: 'muted', text: clockTime(m.created_at) }));
  foot.replaceChildren(...parts);
}

function flash(button, text) {
  const old = button.textContent;
  button.textContent = text;
  setTimeout(() => { button.textContent = old; }, 1500);
}

/** Add a copy button to each code block of a freshly rendered markdown block. */
function enhanceBlock(node) {
  const blocks = node.matches?.('.code-block') ? [node] : [...node.querySelectorAll('.code-block')];
  for (const block of blocks) {
    const head = block.querySelector('.code-head');
    if (!head || head.querySelector('button')) continue;
    const btn = el('button', { class: 'btn-copy', type: 'button', 'aria-label': 'Copy code' }, icon('copy'), el('span', { text: 'Copy' }));
    btn.addEventListener('click', async () => {
      const code = block.querySelector('pre code');
      const ok = await copyText(code ? code.textContent : '');
      const label = btn.querySelector('span');
      label.textContent = ok ? 'Copied' : 'Copy failed';
      btn.classList.toggle('copied', ok);
      setTimeout(() => { label.textContent = 'Copy'; btn.classList.remove('copied'); }, 1500);
    });
    head.appendChild(btn);
  }
  // Tables scroll sideways on narrow screens.
  const tables = node.matches?.('table') ? [node] : [...node.querySelectorAll('table')];
  for (const t of tables) {
    if (t.parentElement?.classList.contains('table-wrap')) continue;
    const wrap = el('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Table' });
    if (t === node) {
      // top-level: wrap in place, keeping the diff key on the wrapper
      const key = node.__mdKey;
      t.replaceWith(wrap);
      wrap.appendChild(t);
      wrap.__mdKey = key;
    } else {
      t.replaceWith(wrap);
      wrap.appendChild(t);
    }
  }
}

function scrollToBottom(force) {
  const box = E.messages;
  if (force || isNearBottom()) box.scrollTop = box.scrollHeight;
  E.jumpBottom.hidden = true;
}

function renderHeader() {
  const conv = state.activeKey ? state.conversations.get(state.activeKey) : null;
  const title = conv ? conv.title || 'New chat' : 'New chat';
  E.conversationTitle.textContent = title;
  document.title = conv ? `${title} · chatd` : 'chatd';
  syncPicker();
}

function renderActive() {
  state.dom.clear();
  state.dirty.clear();
  E.messageList.replaceChildren();
  typingRowEl = null;
  renderHeader();
  renderSidebar();
  const c = activeConv();
  E.emptyState.hidden = !!c;
  E.historyStatus.textContent = '';
  if (c) {
    syncDom(c);
    flushRender();
    scrollToBottom(true);
    renderHistoryStatus(c);
  } else {
    E.emptyState.hidden = false;
  }
  renderTypers();
  restoreDraft();
  updateComposer();
}

// ---------------------------------------------------------------- composer

function activeStream() {
  const c = activeConv();
  if (!c) return null;
  for (const m of c.messages.values()) if (m.message_type === 'assistant' && m.status === 'streaming') return m;
  return null;
}

function updateComposer() {
  const online = !!state.socket?.online;
  const streaming = activeStream();
  const text = E.composerInput.value.trim();
  E.composer.classList.toggle('offline', !online);

  E.sendButton.hidden = !!streaming;
  E.stopButton.hidden = !streaming;
  E.sendButton.disabled = !online || !text;
  E.stopButton.disabled = !online;
  E.composerInput.placeholder = online ? 'Message chatd…' : 'Offline — your draft is kept and can be sent once reconnected';
  E.composerHint.classList.toggle('warn', !online);
  if (E.composerHint.dataset.online !== String(online)) {
    E.composerHint.dataset.online = String(online);
    if (online) {
      E.composerHint.replaceChildren(el('kbd', { text: 'Enter' }), ' to send · ', el('kbd', { text: 'Shift' }), '+',
        el('kbd', { text: 'Enter' }), ' new line');
    } else {
      E.composerHint.textContent = 'Offline: sending is paused until the connection is back. Your draft is kept.';
    }
  }
}

function autosize() {
  const ta = E.composerInput;
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, Math.round(window.innerHeight * 0.4))}px`;
}

function draftKey() { return state.activeKey || 'new'; }

function saveDraft() {
  let drafts = {};
  try { drafts = JSON.parse(sessionStorage.getItem(DRAFTS_KEY) || '{}'); } catch { drafts = {}; }
  const v = E.composerInput.value;
  if (v) drafts[draftKey()] = v; else delete drafts[draftKey()];
  sessionStorage.setItem(DRAFTS_KEY, JSON.stringify(drafts));
}

function restoreDraft() {
  let drafts = {};
  try { drafts = JSON.parse(sessionStorage.getItem(DRAFTS_KEY) || '{}'); } catch { drafts = {}; }
  E.composerInput.value = drafts[draftKey()] || '';
  autosize();
}

async function submitComposer() {
  const text = E.composerInput.value;
  if (!text.trim() || !state.socket?.online || activeStream()) return;
  let c = activeConv();
  const assistantId = E.assistantPicker.value || state.defaultAssistant || undefined;
  if (!c) {
    E.sendButton.disabled = true;
    try {
      const body = assistantId ? { assistant_id: assistantId } : {};
      const res = await api.post('api/v1/conversations', body);
      upsertConversation(res.conversation);
      await selectConversation(res.conversation.id, { focus: true });
      c = activeConv();
    } catch (err) {
      toast(`Could not start a conversation: ${err.message}`, 'error');
      updateComposer();
      return;
    }
    if (!c) return;
  }
  E.composerInput.value = '';
  autosize();
  saveDraftFor('new', '');
  saveDraft();
  stopTyping(false);
  const client_msg_id = randomId();
  const tmpKey = `tmp-${client_msg_id}`;
  const msg = {
    id: tmpKey, conversation_id: c.id, content: text, message_type: 'user', sender_id: meId(), status: 'complete',
    client_msg_id, seq: null, _optimistic: true, _ins: ++c.insertSeq,
  };
  c.messages.set(tmpKey, msg);
  state.pending.set(client_msg_id, { conversation_id: c.id, content: text, assistant_id: assistantId, key: tmpKey, convKey: c.key });
  syncDom(c);
  scrollToBottom(true);
  sendPending(client_msg_id);
  updateComposer();
}

function saveDraftFor(k, v) {
  let drafts = {};
  try { drafts = JSON.parse(sessionStorage.getItem(DRAFTS_KEY) || '{}'); } catch { drafts = {}; }
  if (v) drafts[k] = v; else delete drafts[k];
  sessionStorage.setItem(DRAFTS_KEY, JSON.stringify(drafts));
}

async function sendPending(clientMsgId) {
  const p = state.pending.get(clientMsgId);
  if (!p || !state.socket?.online || p.inflight) return;
  p.inflight = true;
  const data = { conversation_id: p.conversation_id, content: p.content, message_type: 'user', client_msg_id: clientMsgId };
  if (p.assistant_id) data.assistant_id = p.assistant_id;
  try {
    await state.socket.request('send_message', data);
    p.acked = true;
  } catch (err) {
    if (err.disconnected || err.code === 'TIMEOUT') return; // resent (same client_msg_id) after the reconnect
    state.pending.delete(clientMsgId);
    const c = state.convs.get(p.convKey);
    const m = c?.messages.get(p.key);
    if (m) { m._failed = errorText(err.data || { message: err.message }); markDirty(c, p.key); }
    toast(errorText(err.data || { message: err.message, code: err.code }), 'error');
  } finally {
    p.inflight = false;
  }
}

function resendPending(c) {
  for (const [id, p] of state.pending) {
    if (p.convKey === c.key && !p.acked) sendPending(id);
  }
}

function retryMessage(m) {
  const c = activeConv();
  if (!c) return;
  c.messages.delete(idKey(m.id));
  syncDom(c);
  E.composerInput.value = m.content;
  autosize();
  updateComposer();
  E.composerInput.focus();
}

function stopGeneration() {
  const m = activeStream();
  if (!m || !state.socket?.online) return;
  state.socket.request('stop_generation', { message_id: m.id }).catch((err) => {
    if (!err.disconnected) toast(`Could not stop: ${err.message}`, 'error');
  });
}

// typing indicator, throttled: refresh every few seconds while typing, off after a pause
function noteTyping() {
  const c = activeConv();
  if (!c || !state.socket?.online) return;
  const t = state.typing;
  const now = Date.now();
  if (!E.composerInput.value.trim()) { stopTyping(); return; }
  if (!t.on || t.key !== c.key || now - t.sentAt > TYPING_REFRESH_MS) {
    state.socket.send('typing', { conversation_id: c.id, is_typing: true });
    t.on = true; t.key = c.key; t.sentAt = now; t.cid = c.id;
  }
  clearTimeout(t.idleTimer);
  t.idleTimer = setTimeout(() => stopTyping(), TYPING_IDLE_MS);
}

function stopTyping(send = true) {
  const t = state.typing;
  clearTimeout(t.idleTimer);
  if (t.on && send && state.socket?.online) state.socket.send('typing', { conversation_id: t.cid, is_typing: false });
  t.on = false;
}

// ---------------------------------------------------------------- sidebar drawer (narrow screens)

function openSidebar() {
  E.chatView.classList.add('sidebar-open');
  E.scrim.hidden = false;
  E.menuButton.setAttribute('aria-expanded', 'true');
  (E.conversationList.querySelector('[aria-current="page"]') || E.newChat).focus();
}

function closeSidebar() {
  if (!E.chatView.classList.contains('sidebar-open')) return;
  E.chatView.classList.remove('sidebar-open');
  E.scrim.hidden = true;
  E.menuButton.setAttribute('aria-expanded', 'false');
}

// ---------------------------------------------------------------- wiring

function bindUi() {
  E.newChat.append(icon('plus'), el('span', { text: 'New chat' }));
  E.logout.append(icon('logout'));
  E.menuButton.append(icon('menu'));
  E.sendButton.append(icon('send'));
  E.stopButton.append(icon('stop'));
  E.jumpBottom.append(icon('down'));
  E.suggestions.append(...SUGGESTIONS.map((s) => el('button', {
    class: 'suggestion', type: 'button', text: s,
    onclick: () => { E.composerInput.value = s; autosize(); updateComposer(); E.composerInput.focus(); },
  })));

  E.authForm.addEventListener('submit', onAuthSubmit);
  for (const tab of [E.tabLogin, E.tabRegister]) {
    tab.addEventListener('click', () => setAuthMode(tab.dataset.mode));
    tab.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
        const next = tab === E.tabLogin ? E.tabRegister : E.tabLogin;
        setAuthMode(next.dataset.mode);
        next.focus();
      }
    });
  }

  E.newChat.addEventListener('click', newChat);
  E.logout.addEventListener('click', () => signOut('You signed out.'));
  E.menuButton.addEventListener('click', () => (E.chatView.classList.contains('sidebar-open') ? closeSidebar() : openSidebar()));
  E.scrim.addEventListener('click', closeSidebar);
  E.connectionStatus.addEventListener('click', () => state.socket?.connectNow());
  E.jumpBottom.addEventListener('click', () => { scrollToBottom(true); E.composerInput.focus(); });
  E.messages.addEventListener('scroll', () => {
    if (isNearBottom()) E.jumpBottom.hidden = true;
    maybeLoadOlder();
  }, { passive: true });

  E.assistantPicker.addEventListener('change', async () => {
    state.pickedAssistant = E.assistantPicker.value;
    const conv = state.activeKey ? state.conversations.get(state.activeKey) : null;
    if (conv && conv.assistant_id !== state.pickedAssistant) {
      try {
        const res = await api.patch(`api/v1/conversations/${encodeURIComponent(conv.id)}`, { assistant_id: state.pickedAssistant });
        upsertConversation(res.conversation);
      } catch (err) {
        toast(`Could not change the assistant: ${err.message}`, 'error');
        syncPicker();
      }
    }
  });

  E.composer.addEventListener('submit', (ev) => { ev.preventDefault(); submitComposer(); });
  E.stopButton.addEventListener('click', () => { stopGeneration(); E.composerInput.focus(); });
  E.composerInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      submitComposer();
    } else if (ev.key === 'Escape' && activeStream()) {
      ev.preventDefault();
      stopGeneration();
    }
  });
  let draftTimer = null;
  E.composerInput.addEventListener('input', () => {
    autosize();
    updateComposer();
    noteTyping();
    clearTimeout(draftTimer);
    draftTimer = setTimeout(saveDraft, 300);
  });

  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && E.chatView.classList.contains('sidebar-open')) { closeSidebar(); E.menuButton.focus(); }
    if ((ev.ctrlKey || ev.metaKey) && ev.shiftKey && (ev.key === 'O' || ev.key === 'o') && state.session) { ev.preventDefault(); newChat(); }
  });
  window.addEventListener('resize', () => autosize());
  setInterval(() => { if (state.session) renderSidebarTimes(); }, 60000);
}

function renderSidebarTimes() {
  for (const item of E.conversationList.querySelectorAll('.conv-item')) {
    const conv = state.conversations.get(item.dataset.key);
    const t = item.querySelector('.conv-time');
    if (conv && t) t.textContent = relativeTime(conv.updated_at || conv.created_at);
  }
}

async function boot() {
  bindElements();
  bindUi();
  setAuthMode('login');
  openChannel();
  const session = loadSession() || (await askOtherTabs());
  if (session) startChat(session);
  else showAuth();
}

boot();
