// chatd web page: boots the model, the views and the actions, and wires them together.
//
// Data flows one way: a socket frame goes through applyFrame (model/frames.js), which changes
// the model and returns a ChangeSet; commit() hands that to the views (views/render.js) and
// carries out the effects it lists. User input goes from a view to an action (actions/*),
// which talks to the server and updates the model the same way.
import { Api } from './api.js';
import { app, setEffectHandlers } from './actions/app.js';
import {
  deleteConversation, joinConversation, maybeLoadOlder, newChat, openRoute, pickAssistant, refreshConversations,
  refreshTail, renameConversation, selectConversation,
} from './actions/conversations.js';
import { saveDraftSoon } from './actions/drafts.js';
import { retryMessage, retryReply, sendAll, stopGeneration, submitComposer } from './actions/sending.js';
import { askOtherTabs, authenticate, openChannel, signOut, startChat, storedSession } from './actions/session.js';
import { noteTyping } from './actions/typing.js';
import { createState } from './model/state.js';
import { bindAuth, setAuthMode, showAuth } from './views/auth.js';
import { bindComposer } from './views/composer.js';
import { E, bindElements } from './views/elements.js';
import { bindHeader } from './views/header.js';
import { bindMessages } from './views/messages.js';
import { bindSidebar, closeSidebar, isSidebarOpen, renderSidebarTimes } from './views/sidebar.js';
import { bindStatus } from './views/status.js';

const SIDEBAR_TIMES_EVERY_MS = 60000;

const state = createState();
window.__chatd = state; // for debugging and the browser tests (read-only use)
app.state = state;
app.api = new Api({
  getToken: () => state.session?.token,
  onUnauthorized: () => signOut('Your session has expired. Please sign in again.'),
});

// What the model asks for after a frame (see applyFrame's effects).
setEffectHandlers({
  join: ({ convKey }) => { const c = state.convs.get(convKey); if (c) joinConversation(c); },
  send: ({ ids }) => sendAll(ids),
  refreshTail: ({ convKey, stale }) => { const c = state.convs.get(convKey); if (c) refreshTail(c, stale); },
  refreshConversations: () => refreshConversations(),
});

function bindViews() {
  bindAuth(state, { onSubmit: authenticate });
  bindSidebar({
    onSelect: (cid) => selectConversation(cid),
    onRename: renameConversation,
    onDelete: deleteConversation,
    onNewChat: newChat,
    onSignOut: () => signOut('You signed out.'),
  });
  bindHeader({ onPick: pickAssistant });
  bindStatus({ onRetryNow: () => app.socket?.connectNow() });
  bindMessages({ onRetry: retryMessage, onRetryReply: retryReply, onNearTop: maybeLoadOlder, onNewChat: newChat });
  bindComposer(state, {
    onSubmit: submitComposer,
    onStop: stopGeneration,
    onInput: () => { noteTyping(); saveDraftSoon(); },
  });
}

// Page-wide keys: Esc closes the drawer, Ctrl/Cmd+Shift+O starts a new chat.
function bindShortcuts() {
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && isSidebarOpen()) { closeSidebar(); E.menuButton.focus(); }
    if ((ev.ctrlKey || ev.metaKey) && ev.shiftKey && (ev.key === 'O' || ev.key === 'o') && state.session) { ev.preventDefault(); newChat(); }
  });
}

async function boot() {
  bindElements();
  bindViews();
  bindShortcuts();
  // Back, Forward, an edited or followed `#/c/ID` link: open what the URL names.
  window.addEventListener('hashchange', () => openRoute(window.location.hash));
  setInterval(() => { if (state.session) renderSidebarTimes(state); }, SIDEBAR_TIMES_EVERY_MS);
  setAuthMode(state, 'login');
  openChannel();
  const session = storedSession() || (await askOtherTabs());
  if (session) startChat(session);
  else showAuth(state);
}

boot();
