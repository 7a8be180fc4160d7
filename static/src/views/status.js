// The connection badge: online, connecting, or offline with a retry countdown (click: retry now).
import { E } from './elements.js';

let countdown = null;

/** Show the socket's state; `retryInMs` is the wait before the next attempt when offline. */
export function renderConnection({ state: s, retryInMs }) {
  const status = E.connectionStatus;
  status.dataset.state = s;
  clearInterval(countdown);
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
    countdown = setInterval(tick, 500);
  } else text.textContent = 'Offline';
  status.title = s === 'waiting' ? 'Connection lost. Click to retry now.' : '';
}

/** Wire the badge: onRetryNow() when clicked. */
export function bindStatus({ onRetryNow }) {
  E.connectionStatus.addEventListener('click', () => onRetryNow());
}
