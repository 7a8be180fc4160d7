// The sign-in / create-account form, and switching between it and the chat.
import { E } from './elements.js';
import { authErrorText } from '../model/session.js';

/** Show the sign-in or the create-account tab. */
export function setAuthMode(state, mode) {
  state.authMode = mode;
  const reg = mode === 'register';
  E.tabLogin.setAttribute('aria-selected', String(!reg));
  E.tabRegister.setAttribute('aria-selected', String(reg));
  E.tabLogin.tabIndex = reg ? -1 : 0;
  E.tabRegister.tabIndex = reg ? 0 : -1;
  E.authFields.setAttribute('aria-labelledby', reg ? 'tab-register' : 'tab-login');
  E.authSubmit.textContent = reg ? 'Create account' : 'Sign in';
  E.authPassword.autocomplete = reg ? 'new-password' : 'current-password';
  E.authHint.hidden = !reg;
  E.authError.textContent = '';
}

/** Show the sign-in form (with an optional notice, e.g. why the session ended). */
export function showAuth(state, notice = '') {
  E.boot.hidden = true;
  E.chatView.hidden = true;
  E.authView.hidden = false;
  setAuthMode(state, 'login');
  E.authNotice.textContent = notice;
  document.title = 'Sign in · chatd';
  setTimeout(() => (E.authUsername.value ? E.authPassword : E.authUsername).focus(), 0);
}

/** Show the chat for a signed-in user. */
export function showChat(session) {
  E.boot.hidden = true;
  E.authView.hidden = true;
  E.chatView.hidden = false;
  E.meName.textContent = session.user?.username || `User ${session.user?.id}`;
  E.meAvatar.textContent = (session.user?.username || '?').slice(0, 1).toUpperCase();
  document.title = 'chatd';
}

/** Forget the typed password once it has been used. */
export function clearPassword() {
  E.authPassword.value = '';
}

// Check the form before asking the server; returns the complaint, or '' when it may be sent.
function complaint(state, username, password) {
  if (!username) { E.authUsername.focus(); return 'Enter a username.'; }
  if (!password) { E.authPassword.focus(); return 'Enter a password.'; }
  if (state.authMode === 'register' && password.length < 8) {
    E.authPassword.focus();
    return 'Choose a password of at least 8 characters.';
  }
  return '';
}

/** Wire the form: tabs (click, arrow keys) and submit, which calls onSubmit(mode, username, password). */
export function bindAuth(state, { onSubmit }) {
  E.authForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const username = E.authUsername.value.trim();
    const password = E.authPassword.value;
    E.authError.textContent = complaint(state, username, password);
    if (E.authError.textContent) return;
    E.authSubmit.disabled = true;
    E.authSubmit.classList.add('busy');
    try {
      await onSubmit(state.authMode, username, password);
    } catch (err) {
      E.authError.textContent = authErrorText(err);
    } finally {
      E.authSubmit.disabled = false;
      E.authSubmit.classList.remove('busy');
    }
  });
  for (const tab of [E.tabLogin, E.tabRegister]) {
    tab.addEventListener('click', () => setAuthMode(state, tab.dataset.mode));
    tab.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
        const next = tab === E.tabLogin ? E.tabRegister : E.tabLogin;
        setAuthMode(state, next.dataset.mode);
        next.focus();
      }
    });
  }
}
