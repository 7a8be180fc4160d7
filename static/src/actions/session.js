// Signing in and out, the socket's lifecycle, and sharing the session with the browser's other
// tabs over a same-origin BroadcastChannel (a new tab asks; signing out signs out every tab).
import { app, commit } from './app.js';
import { LIST_LIMIT, openRoute } from './conversations.js';
import { ChangeSet } from '../model/changes.js';
import { setAssistants } from '../model/assistants.js';
import { upsertConversation } from '../model/conversations.js';
import { applyFrame } from '../model/frames.js';
import { parseRoute, routeFor } from '../model/route.js';
import { ACTIVE_KEY, SESSION_KEY, authFailedNotice, parseSession, sessionFromAuth } from '../model/session.js';
import { setConnection, signIn, signOut as forgetAccount } from '../model/state.js';
import { ChatSocket, socketUrl } from '../socket.js';
import { clearPassword, showAuth, showChat } from '../views/auth.js';
import { focusComposer } from '../views/composer.js';
import { renderAssistants } from '../views/header.js';
import { clearMessages } from '../views/messages.js';
import { renderActive } from '../views/render.js';
import { clearSidebar } from '../views/sidebar.js';
import { renderConnection } from '../views/status.js';
import { toast } from '../views/toasts.js';

const CHANNEL_NAME = 'chatd-session';
const ASK_TABS_MS = 200;

/** The session this tab kept in sessionStorage, if still valid. */
export const storedSession = () => parseSession(sessionStorage.getItem(SESSION_KEY), Date.now());

function storeSession(s) {
  if (s) sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(SESSION_KEY);
}

/** Listen to the other tabs: hand out our session, follow their sign-in and sign-out. */
export function openChannel() {
  if (!('BroadcastChannel' in window)) return;
  app.channel = new BroadcastChannel(CHANNEL_NAME);
  app.channel.addEventListener('message', (ev) => {
    const m = ev.data || {};
    const session = app.state.session;
    if (m.type === 'need-session' && session) {
      app.channel.postMessage({ type: 'session', session });
    } else if (m.type === 'signed-in' && !session && m.session) {
      startChat(m.session, { announce: false });
    } else if (m.type === 'signed-out' && session && m.token === session.token) {
      signOut('You signed out in another tab.', { broadcast: false });
    }
  });
}

/** A new tab of a signed-in user asks the others for the session (null if none answers soon). */
export function askOtherTabs(timeoutMs = ASK_TABS_MS) {
  const channel = app.channel;
  if (!channel) return Promise.resolve(null);
  return new Promise((resolve) => {
    const onMsg = (ev) => {
      if (ev.data && ev.data.type === 'session' && ev.data.session?.token) {
        channel.removeEventListener('message', onMsg);
        resolve(ev.data.session);
      }
    };
    channel.addEventListener('message', onMsg);
    channel.postMessage({ type: 'need-session' });
    setTimeout(() => { channel.removeEventListener('message', onMsg); resolve(null); }, timeoutMs);
  });
}

/** Sign in or create an account from the form; errors go back to the form. */
export async function authenticate(mode, username, password) {
  const res = mode === 'register' ? await app.api.register(username, password) : await app.api.login(username, password);
  clearPassword();
  startChat(sessionFromAuth(res, Date.now()), { announce: true });
}

// A socket for the session whose frames and state changes all go through the model.
function connect() {
  const socket = new ChatSocket({ url: socketUrl(), getToken: () => app.state.session?.token });
  app.socket = socket;
  socket.addEventListener('state', (ev) => {
    renderConnection(ev.detail);
    commit(setConnection(app.state, ev.detail.state));
  });
  // The socket reports auth_success as `online`; the model takes it as the frame it is.
  socket.addEventListener('online', (ev) => {
    commit(applyFrame(app.state, { type: 'auth_success', data: { user_id: ev.detail.userId, session_id: ev.detail.sessionId } }));
  });
  socket.addEventListener('frame', (ev) => commit(applyFrame(app.state, ev.detail)));
  socket.addEventListener('authfailed', (ev) => signOut(authFailedNotice(ev.detail.reason), { broadcast: false }));
  socket.start();
  return socket;
}

/** Show the chat for a session: connect, load assistants and conversations, reopen the last one. */
export async function startChat(session, { announce = false } = {}) {
  const state = app.state;
  signIn(state, session);
  storeSession(session);
  if (announce && app.channel) app.channel.postMessage({ type: 'signed-in', session });
  showChat(session);
  const socket = connect();
  renderActive(state);
  try {
    const [assistants, convs] = await Promise.all([
      app.api.get('api/v1/assistants'),
      app.api.get(`api/v1/conversations?limit=${LIST_LIMIT}`),
    ]);
    if (app.socket !== socket) return; // signed out (or in again) meanwhile
    setAssistants(state, assistants.assistants || []);
    renderAssistants(state);
    const ch = new ChangeSet();
    for (const conv of convs.conversations || []) upsertConversation(state, conv, ch);
    ch.sidebar = true;
    commit(ch);
  } catch (err) {
    if (err.status !== 401) toast(`Could not load your conversations: ${err.message}`, 'error');
    return;
  }
  // The URL says which conversation to open (a reload, a bookmark); without one, the one this
  // tab had open (sessionStorage), as before conversations had URLs.
  const hash = window.location.hash;
  const remembered = sessionStorage.getItem(ACTIVE_KEY);
  if (parseRoute(hash) !== null) await openRoute(hash, { focus: false });
  else if ((!hash || hash === '#') && remembered && state.conversations.has(remembered)) {
    await openRoute(routeFor(remembered), { focus: false });
  } else renderActive(state);
  focusComposer();
}

/** Sign out (this tab, and the others unless they told us); `notice` says why on the form. */
export function signOut(notice = '', { broadcast = true } = {}) {
  const state = app.state;
  const old = state.session;
  if (!old) { showAuth(state, notice); return; }
  if (broadcast && app.channel) app.channel.postMessage({ type: 'signed-out', token: old.token });
  forgetAccount(state);
  storeSession(null);
  if (app.socket) { app.socket.stop(); app.socket = null; }
  clearMessages();
  clearSidebar();
  showAuth(state, notice);
}
