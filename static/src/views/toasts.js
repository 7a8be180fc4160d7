// Short-lived notices in the corner; errors are announced as alerts, the rest politely.
import { E } from './elements.js';
import { el, icon } from '../util.js';

/** Show a notice for `ms` milliseconds. */
export function toast(text, kind = 'info', ms = 5000) {
  const t = el('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    kind === 'error' ? icon('alert') : null, el('span', { text }));
  E.toasts.appendChild(t);
  setTimeout(() => { t.classList.add('toast-out'); setTimeout(() => t.remove(), 300); }, ms);
}
