// The page's model: one plain object (also `window.__chatd`, read by the browser tests), with
// per-conversation caches created on first use. Nothing here knows about the DOM or the network.
import { ChangeSet } from './changes.js';
import { idKey } from './ids.js';

/** A fresh, signed-out model. */
export function createState() {
  return {
    session: null, // {token, user: {id, username}, expiresAt}
    connection: 'stopped', // the socket's state: connecting | online | waiting | stopped
    authMode: 'login', // which tab of the sign-in form is shown
    assistants: [],
    defaultAssistant: null,
    pickedAssistant: null, // the picker's choice for a chat that does not exist yet
    conversations: new Map(), // key -> conversation as the server describes it (the sidebar)
    convs: new Map(), // key -> per-conversation cache: messages, streams, seq, join state
    activeKey: null, // null: a new, not yet created chat
    missingKey: null, // a conversation the URL named that does not exist or is not ours (shown as such)
    pending: new Map(), // client_msg_id -> a message sent but not yet echoed back
    unread: new Set(), // keys of conversations with news since they were last open
  };
}

/** The cache of one conversation, created empty on first use. */
export function convState(state, cid) {
  const key = idKey(cid);
  let c = state.convs.get(key);
  if (!c) {
    c = {
      key, id: cid, messages: new Map(), streams: new Map(), lastSeq: 0, loaded: false, loading: null,
      hasMore: false, loadingOlder: false, joined: false, joining: false, assistantTyping: false,
      typers: new Map(), // user key -> when their indicator expires (ms)
      insertSeq: 0, // arrival counter: orders messages that have no seq yet
    };
    state.convs.set(key, c);
  }
  return c;
}

/** The cache of the open conversation, or null for a new chat. */
export const activeConv = (state) => (state.activeKey ? state.convs.get(state.activeKey) || null : null);

/** The signed-in user's id. */
export const meId = (state) => state.session?.user?.id;

/** Whether a sender id is the signed-in user (ids compare as strings). */
export const isMe = (state, senderId) => senderId !== null && senderId !== undefined && idKey(senderId) === idKey(meId(state));

/** Whether the socket is authenticated and usable. */
export const isOnline = (state) => state.connection === 'online';

/** Record the socket's state; a lost connection ends every subscription (rejoined on reconnect). */
export function setConnection(state, connection) {
  const ch = new ChangeSet();
  state.connection = connection;
  if (connection !== 'online') {
    for (const c of state.convs.values()) { c.joined = false; c.joining = false; }
  }
  ch.composer = true;
  return ch;
}

/** Start a signed-in session (the conversations are loaded afterwards). */
export function signIn(state, session) {
  state.session = session;
}

/** Forget everything of the signed-out account. */
export function signOut(state) {
  state.session = null;
  state.conversations.clear();
  state.convs.clear();
  state.pending.clear();
  state.activeKey = null;
  state.missingKey = null;
}
