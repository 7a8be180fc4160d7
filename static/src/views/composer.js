// The message box: Enter sends, Shift+Enter breaks the line, Esc stops a reply; grows with its
// text; shows Stop instead of Send while a reply streams; explains itself when offline.
import { E } from './elements.js';
import { draftKey, draftOf } from '../model/drafts.js';
import { streamingReply } from '../model/messages.js';
import { activeConv, isOnline } from '../model/state.js';
import { el, icon } from '../util.js';

const SUGGESTIONS = [
  'Explain how WebSockets differ from long polling',
  'Write a Python function that merges two sorted lists',
  'Give me a markdown table of three sorting algorithms',
];

/** Whether the open conversation has a reply being written (Stop is shown, sending waits). */
export const isStreaming = (state) => !!streamingReply(activeConv(state));

/** Bring the Send/Stop buttons, placeholder and hint up to date. */
export function renderComposer(state) {
  const online = isOnline(state);
  const streaming = isStreaming(state);
  const text = E.composerInput.value.trim();
  E.composer.classList.toggle('offline', !online);
  E.sendButton.hidden = streaming;
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

/** Grow the box with its text, up to 40 % of the window. */
export function autosize() {
  const ta = E.composerInput;
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, Math.round(window.innerHeight * 0.4))}px`;
}

/** The text in the box. */
export const composerText = () => E.composerInput.value;

/** Put text in the box (a retried message, a suggestion, a restored draft). */
export function setComposerText(state, text) {
  E.composerInput.value = text;
  autosize();
  renderComposer(state);
}

/** Show the open conversation's saved draft (the box is not re-rendered otherwise). */
export function restoreDraft(state) {
  E.composerInput.value = draftOf(sessionStorage, draftKey(state.activeKey));
  autosize();
}

/** Move the keyboard focus to the box. */
export const focusComposer = () => E.composerInput.focus();

/** Stop the Send button while a new conversation is being created for the first message. */
export function holdSend() {
  E.sendButton.disabled = true;
}

/**
 * Wire the box: onSubmit() on Enter or Send, onStop() on Esc or Stop, onInput() on every edit
 * (after the box was resized and re-rendered).
 */
export function bindComposer(state, { onSubmit, onStop, onInput }) {
  E.sendButton.append(icon('send'));
  E.stopButton.append(icon('stop'));
  E.suggestions.append(...SUGGESTIONS.map((s) => el('button', {
    class: 'suggestion', type: 'button', text: s,
    onclick: () => { setComposerText(state, s); focusComposer(); },
  })));
  E.composer.addEventListener('submit', (ev) => { ev.preventDefault(); onSubmit(); });
  E.stopButton.addEventListener('click', () => { onStop(); focusComposer(); });
  E.composerInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      onSubmit();
    } else if (ev.key === 'Escape' && isStreaming(state)) {
      ev.preventDefault();
      onStop();
    }
  });
  E.composerInput.addEventListener('input', () => {
    autosize();
    renderComposer(state);
    onInput();
  });
  window.addEventListener('resize', () => autosize());
}
