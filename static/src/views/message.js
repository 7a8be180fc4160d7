// One message's <li>: built once per kind (me, other member, assistant, system), then updated in
// place as it streams, so screen readers hear only what is new (aria-live on the reply body).
import { assistantName } from '../model/assistants.js';
import { idKey } from '../model/ids.js';
import { canRetryReply } from '../model/messages.js';
import { activeConv, isMe } from '../model/state.js';
import { renderInto } from '../markdown.js';
import { clockTime, copyText, el, formatUsage, icon } from '../util.js';

const typingDots = () => el('div', { class: 'typing-dots', role: 'status', 'aria-label': 'The assistant is typing' }, el('span'), el('span'), el('span'));

// Which way a message is drawn.
function messageKind(state, m) {
  if (m.message_type === 'assistant') return 'assistant';
  if (m.message_type === 'system') return 'system';
  return isMe(state, m.sender_id) ? 'me' : 'other';
}

// An empty element for a message of this kind.
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

/** The row shown while the assistant is typing before its reply exists. */
export function buildTypingRow(state, convKey) {
  return el('li', { class: 'msg msg-assistant msg-typing' },
    el('div', { class: 'msg-avatar', 'aria-hidden': 'true' }, icon('spark')),
    el('div', { class: 'msg-main' },
      el('div', { class: 'msg-author', text: assistantName(state, state.conversations.get(convKey)?.assistant_id) }),
      typingDots()));
}

/**
 * Bring a message's element up to date (a fresh one when there is none, or its kind changed).
 * `onRetry(m)` is called by the Retry button of a message that failed to send, `onRetryReply(m)`
 * by that of a reply that failed.
 */
export function updateMessage(state, li, m, { onRetry, onRetryReply }) {
  const kind = messageKind(state, m);
  if (!li || li.dataset.kind !== kind) {
    const fresh = buildMessage(kind, idKey(m.id));
    if (li) li.replaceWith(fresh);
    li = fresh;
  }
  li.dataset.status = m._failed ? 'failed' : m._optimistic ? 'sending' : m.status || 'complete';
  const body = li.querySelector('.msg-body');
  const foot = li.querySelector('.msg-foot');
  if (kind === 'assistant') {
    li.querySelector('.msg-author').textContent = assistantName(state, m.assistant_id);
    renderReplyBody(body, m);
    li.classList.toggle('streaming', m.status === 'streaming');
    renderAssistantFoot(foot, m, canRetryReply(activeConv(state), m) ? onRetryReply : null);
  } else {
    if (kind === 'other') li.querySelector('.msg-author').textContent = `User ${m.sender_id}`;
    if (body.textContent !== (m.content || '')) body.textContent = m.content || '';
    renderUserFoot(foot, m, onRetry);
  }
  return li;
}

// Markdown, re-rendered only when the text changed; typing dots until the first text arrives.
function renderReplyBody(body, m) {
  const streaming = m.status === 'streaming';
  const text = m.content || '';
  if (streaming && !text) {
    if (!body.querySelector('.typing-dots')) body.replaceChildren(typingDots());
  } else {
    const dots = body.querySelector('.typing-dots');
    if (dots) dots.remove();
    if (body.__text !== text) {
      renderInto(body, text, { enhance: enhanceBlock });
      body.__text = text;
    }
  }
  body.setAttribute('aria-busy', streaming ? 'true' : 'false');
}

// The foot is rebuilt only when what it shows changed (the Copy button keeps its focus). A
// failure shows here once, with Retry when the reply can be asked for again; the token counts
// sit in a Details popover, out of the way.
function renderAssistantFoot(foot, m, onRetry) {
  const sig = JSON.stringify([m.status, m.usage, m.error, m.finish_reason, !!m.content, !!onRetry]);
  if (foot.__sig === sig) return;
  foot.__sig = sig;
  const parts = [];
  if (m.status === 'cancelled') parts.push(el('span', { class: 'badge badge-warn', text: 'Stopped' }));
  else if (m.status === 'error') {
    parts.push(el('div', { class: 'msg-error', role: 'alert' },
      icon('alert'), el('span', { class: 'msg-error-text', text: m.error ? `Error: ${m.error}` : 'Error' }),
      retryButton(m, onRetry)));
  } else if (m.status === 'interrupted') {
    parts.push(el('span', { class: 'badge badge-warn', text: 'Interrupted' }), retryButton(m, onRetry));
  }
  if (m.finish_reason === 'length') parts.push(el('span', { class: 'badge', text: 'Cut off at the length limit' }));
  if (m.status !== 'streaming') {
    if (m.content) {
      parts.push(el('button', {
        class: 'btn-link copy-msg', type: 'button', text: 'Copy',
        onclick: async (ev) => { const ok = await copyText(m.content); flash(ev.currentTarget, ok ? 'Copied' : 'Copy failed'); },
      }));
    }
    if (m.usage) {
      parts.push(el('details', { class: 'msg-details' },
        el('summary', { class: 'btn-link', text: 'Details', title: 'Token counts' }),
        el('div', { class: 'details-pop', role: 'note' }, el('span', { class: 'usage', text: formatUsage(m.usage) }))));
    }
  }
  foot.replaceChildren(...parts);
}

const retryButton = (m, onRetry) => (onRetry
  ? el('button', { class: 'btn btn-small btn-retry', type: 'button', text: 'Retry', onclick: () => onRetry(m) }) : null);

function renderUserFoot(foot, m, onRetry) {
  const sig = JSON.stringify([m._optimistic, m._failed, m.created_at]);
  if (foot.__sig === sig) return;
  foot.__sig = sig;
  const parts = [];
  if (m._failed) {
    parts.push(el('div', { class: 'msg-error', role: 'alert' }, icon('alert'),
      el('span', { class: 'msg-error-text', text: `Not sent: ${m._failed}` }),
      el('button', { class: 'btn btn-small btn-retry', type: 'button', text: 'Retry', onclick: () => onRetry(m) })));
  } else if (m._optimistic) parts.push(el('span', { class: 'muted', text: 'Sending…' }));
  else if (m.created_at) parts.push(el('time', { datetime: m.created_at, class: 'muted', text: clockTime(m.created_at) }));
  foot.replaceChildren(...parts);
}

function flash(button, text) {
  const old = button.textContent;
  button.textContent = text;
  setTimeout(() => { button.textContent = old; }, 1500);
}

/** Add a copy button to each code block of a freshly rendered markdown block; wrap tables to scroll. */
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
    const key = node.__mdKey; // a top-level table: the diff key moves to the wrapper
    t.replaceWith(wrap);
    wrap.appendChild(t);
    if (t === node) wrap.__mdKey = key;
  }
}
