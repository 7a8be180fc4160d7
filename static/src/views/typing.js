// "User 7 is typing…" under the messages of the open conversation; it clears itself when the
// last indicator expires.
import { E } from './elements.js';
import { activeConv } from '../model/state.js';
import { nextTyperExpiry, typersText } from '../model/typing.js';

let expiryTimer = null;

/** Show who else is typing in the open conversation. */
export function renderTypers(state) {
  const c = activeConv(state);
  const now = Date.now();
  const text = typersText(c, now);
  E.typingOthers.textContent = text;
  E.typingOthers.classList.toggle('on', text !== '');
  clearTimeout(expiryTimer);
  const next = nextTyperExpiry(c, now);
  if (next !== null) expiryTimer = setTimeout(() => renderTypers(state), next - now + 1);
}
