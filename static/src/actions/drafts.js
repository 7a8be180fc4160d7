// Saving the composer's text as the open conversation's draft (sessionStorage).
import { app } from './app.js';
import { draftKey, saveDraft } from '../model/drafts.js';
import { composerText } from '../views/composer.js';

const SAVE_AFTER_MS = 300;
let timer = null;

/** Save the composer's text as the draft of the open conversation. */
export function saveCurrentDraft() {
  saveDraft(sessionStorage, draftKey(app.state.activeKey), composerText());
}

/** Save the draft shortly after the typing pauses. */
export function saveDraftSoon() {
  clearTimeout(timer);
  timer = setTimeout(saveCurrentDraft, SAVE_AFTER_MS);
}

/** Forget the draft of a new, not yet created chat (its text was just sent). */
export function clearNewChatDraft() {
  saveDraft(sessionStorage, draftKey(null), '');
}
