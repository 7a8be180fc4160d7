// The top bar: the open conversation's title (also the tab's title) and the assistant picker.
import { E } from './elements.js';
import { wantedAssistant } from '../model/assistants.js';
import { conversationTitle } from '../model/conversations.js';
import { el } from '../util.js';

/** Show the open conversation's title and assistant. */
export function renderHeader(state) {
  const conv = state.activeKey ? state.conversations.get(state.activeKey) : null;
  const title = !conv && state.missingKey !== null ? 'Conversation not found' : conversationTitle(conv);
  E.conversationTitle.textContent = title;
  document.title = conv ? `${title} · chatd` : 'chatd';
  syncPicker(state);
}

/** Fill the picker with the assistants (hidden when there are none). */
export function renderAssistants(state) {
  const list = state.assistants;
  E.assistantPicker.replaceChildren(...list.map((a) => el('option', { value: a.id, text: a.name || a.id })));
  E.assistantPicker.hidden = list.length === 0;
  syncPicker(state);
}

/** Point the picker at the assistant the model wants (if it is one of the options). */
export function syncPicker(state) {
  const want = wantedAssistant(state);
  if (want && [...E.assistantPicker.options].some((o) => o.value === want)) E.assistantPicker.value = want;
}

/** The assistant chosen in the picker ('' when none). */
export const pickedAssistant = () => E.assistantPicker.value;

/** Wire the picker: onPick(assistantId) when the user chooses another one. */
export function bindHeader({ onPick }) {
  E.assistantPicker.addEventListener('change', () => onPick(E.assistantPicker.value));
}
