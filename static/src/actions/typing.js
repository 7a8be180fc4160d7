// Our own typing indicator, throttled: sent at most every few seconds while typing, and turned
// off after a pause, when the text is emptied, or when the message is sent.
import { app, online } from './app.js';
import { activeConv } from '../model/state.js';
import { composerText } from '../views/composer.js';

const REFRESH_MS = 3000;
const IDLE_MS = 4000;

const typing = { key: null, cid: null, on: false, sentAt: 0, idleTimer: null };

/** The user edited the composer: tell the others (throttled). */
export function noteTyping() {
  const c = activeConv(app.state);
  if (!c || !online()) return;
  const now = Date.now();
  if (!composerText().trim()) { stopTyping(); return; }
  if (!typing.on || typing.key !== c.key || now - typing.sentAt > REFRESH_MS) {
    app.socket.send('typing', { conversation_id: c.id, is_typing: true });
    Object.assign(typing, { on: true, key: c.key, sentAt: now, cid: c.id });
  }
  clearTimeout(typing.idleTimer);
  typing.idleTimer = setTimeout(() => stopTyping(), IDLE_MS);
}

/** Turn our indicator off (without a frame when `send` is false: sending a message ends it). */
export function stopTyping(send = true) {
  clearTimeout(typing.idleTimer);
  if (typing.on && send && online()) app.socket.send('typing', { conversation_id: typing.cid, is_typing: false });
  typing.on = false;
}
