// What the actions share: the model, the REST client, the socket, the tab channel, and commit(),
// which renders a ChangeSet and carries out the effects it asks for.
import { ChangeSet } from '../model/changes.js';
import { routeFor } from '../model/route.js';
import { ACTIVE_KEY } from '../model/session.js';
import { render } from '../views/render.js';

export const app = {
  state: null, // the model (createState())
  api: null, // Api
  socket: null, // ChatSocket of the signed-in session
  channel: null, // BroadcastChannel to the other tabs
};

let effectHandlers = {};

/** Name the function that carries out each kind of effect ({join, send, refreshTail, refreshConversations}). */
export function setEffectHandlers(handlers) {
  effectHandlers = handlers;
}

/** Whether the socket is authenticated and can carry requests. */
export const online = () => !!app.socket?.online;

/**
 * Remember which conversation is open (null: a new chat): its URL (`#/c/ID`, a new history entry
 * unless `replace`, so Back returns to the previous one) and this tab's sessionStorage.
 */
export function persistActive(key, { replace = false } = {}) {
  if (key) sessionStorage.setItem(ACTIVE_KEY, key);
  else sessionStorage.removeItem(ACTIVE_KEY);
  const want = routeFor(key);
  const here = window.location.hash;
  if (here === want) return;
  // The first route of a page loaded without one replaces that entry: Back leaves the page, as before.
  if (replace || !here || here === '#') window.history.replaceState(window.history.state, '', want);
  else window.history.pushState(null, '', want);
}

/** Show what a model update changed, then make the requests it asked for. */
export function commit(ch) {
  if (ch.closed) persistActive(null, { replace: true });
  render(app.state, ch);
  for (const effect of ch.effects) effectHandlers[effect.type]?.(effect);
  return ch;
}

/** Apply one model update (fn(state, changeSet)), render it, and return what fn returned. */
export function update(fn) {
  const ch = new ChangeSet();
  const result = fn(app.state, ch);
  commit(ch);
  return result;
}
